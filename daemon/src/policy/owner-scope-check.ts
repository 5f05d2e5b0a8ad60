import { formatCidr, formatRuleScope, hasOwnerScope } from "@netfence/proto/parse";
import { invalidArgument } from "@netfence/proto/errors";
import type { AttachmentPolicy, CidrRule, DnsPolicy, DomainRule, PolicyCommand } from "./policy.js";

/**
 * User and group rules need a cgroup attachment (issue 15): only the cgroup programs see the sending
 * socket and its owner; a TC program sees packets, and anything it could take for an owner the
 * workload forges (docs/security.md). A policy or command naming users or groups for an interface
 * attachment is refused as a whole, naming the first such rule; nothing changes.
 */

export type AttachmentKind = "interface" | "cgroup";

const NEED = "user and group rules need a cgroup attachment";

function cidrRule(kind: string, r: CidrRule): void {
  if (hasOwnerScope(r.scope)) throw invalidArgument(`${kind} ${formatCidr(r.cidr)} (${formatRuleScope(r.scope)}): ${NEED}`, { rule: `${kind} ${formatCidr(r.cidr)}` });
}

function domainRule(kind: string, r: DomainRule): void {
  const name = `${r.includeSubdomains ? "*." : ""}${r.domain}`;
  if (hasOwnerScope(r.scope)) throw invalidArgument(`${kind} ${name} (${formatRuleScope(r.scope)}): ${NEED}`, { rule: `${kind} ${name}` });
}

function dnsRules(dns: DnsPolicy): void {
  for (const r of dns.allowDomains) domainRule("allow-domain", r);
  for (const r of dns.denyDomains) domainRule("deny-domain", r);
}

function lists(allow: readonly CidrRule[], deny: readonly CidrRule[]): void {
  // Owner scopes are rare: one pass that allocates nothing for unscoped rules.
  for (const r of allow) if (r.scope !== undefined) cidrRule("allow-cidr", r);
  for (const r of deny) if (r.scope !== undefined) cidrRule("deny-cidr", r);
}

/** Throws INVALID_ARGUMENT when `policy` names users or groups and the attachment is not a cgroup one. */
export function checkPolicyOwnerScopes(policy: AttachmentPolicy, kind: AttachmentKind): void {
  if (kind === "cgroup") return;
  lists(policy.allowCidrs, policy.denyCidrs);
  dnsRules(policy.dns);
}

/** The same for one command. */
export function checkCommandOwnerScopes(command: PolicyCommand, kind: AttachmentKind): void {
  if (kind === "cgroup") return;
  switch (command.kind) {
    case "allow-cidr":
    case "deny-cidr":
      cidrRule(command.kind, command.rule);
      return;
    case "allow-domain":
    case "deny-domain":
      domainRule(command.kind, command.rule);
      return;
    case "bulk-update":
      lists(command.allowCidrs, command.denyCidrs);
      if (command.dns !== null) dnsRules(command.dns);
      return;
    default:
      return;
  }
}
