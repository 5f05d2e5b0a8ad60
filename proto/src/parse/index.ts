// The contract's shared value parsers: one module each for CIDRs, domains, host:port and
// durations, used by the daemon's config and commands, the CLI, the SDK and netfence-cp.
export { cidrContains, formatAddr, formatCidr, parseCidr, parseCidrGeneral, type Cidr } from "./cidr.js";
export { canonicalQueryName, normalizeDomain, parseDomainPattern, MAX_DOMAIN_LENGTH, MAX_LABEL_LENGTH, type DomainRule } from "./domain.js";
export { formatHostPort, parseHostPort, type HostPort, type HostPortOptions } from "./host-port.js";
export { durationToMs, parseDurationMs, parseDurationSeconds, MAX_TTL_SECONDS } from "./duration.js";
export { ATTACHMENT_ID_FORM, isAttachmentId } from "./attachment-id.js";
export { hasOwnerScope, isUnscoped, scopeKey, type PortRange, type Principal, type RuleScope } from "./rule-scope.js";
export {
  formatRuleScope, mergePortRanges, parsePortRange, parseProtocol, parseRuleScope, principalNamesOf, protocolName, ruleScopeToInput,
  MAX_PRINCIPAL_ID, MAX_SCOPE_ITEMS, PORT_PROTOCOLS, PROTOCOL_NUMBERS,
  type PortInput, type PrincipalKind, type PrincipalLookup, type RuleScopeInput,
} from "./rule-scope-parse.js";
