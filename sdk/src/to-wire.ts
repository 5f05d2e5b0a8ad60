import { create } from "@bufbuild/protobuf";
import { DurationSchema, type Duration } from "@bufbuild/protobuf/wkt";
import {
  BulkUpdateSchema,
  CIDREntrySchema,
  ControlCommandSchema,
  DnsConfigSchema,
  DomainEntrySchema,
  RuleScopeSchema,
  SubscribedAckSchema,
  type RuleScope,
  type BulkUpdate,
  type CIDREntry,
  type ControlCommand,
  type DnsConfig,
  type DomainEntry,
  type SubscribedAck,
} from "@netfence/proto/control";
import { dnsModeToWire, policyModeToWire as modeToWire } from "@netfence/proto/modes";
import { parseRuleScope, protocolName } from "@netfence/proto/parse";
import { EstablishedMode } from "@netfence/proto/types";
import type { CidrSpec, Command, DnsSpec, DomainSpec, EstablishedSpec, PolicySpec, ScopeSpec } from "./policy-spec.js";

export { dnsModeToWire, modeToWire };

/** Plain SDK values → netfence.v1 messages. */

function ttlToWire(ttlSeconds: number | undefined): Duration | undefined {
  if (ttlSeconds === undefined || ttlSeconds === 0) return undefined;
  const whole = Math.trunc(ttlSeconds);
  return create(DurationSchema, { seconds: BigInt(whole), nanos: Math.round((ttlSeconds - whole) * 1e9) });
}

/**
 * A scope → RuleScope (undefined when it limits nothing), checked by the daemon's own parser first
 * (proto/src/parse/rule-scope-parse.ts): protocols by name, ports merged; user and group names are
 * only checked for their form here (the daemon resolves them).
 */
export function scopeToWire(scope: ScopeSpec | undefined, field = "scope"): RuleScope | undefined {
  const parsed = parseRuleScope(scope, field, () => 0);
  if (parsed === undefined || scope === undefined) return undefined;
  return create(RuleScopeSchema, {
    protocols: parsed.protocols.map(protocolName),
    ports: parsed.ports.map((r) => ({ from: r.from, to: r.to === r.from ? 0 : r.to })),
    users: (scope.users ?? []).map((u) => String(u).trim()),
    groups: (scope.groups ?? []).map((g) => String(g).trim()),
  });
}

export function establishedToWire(mode: EstablishedSpec | undefined): EstablishedMode {
  if (mode === undefined) return EstablishedMode.UNSPECIFIED;
  if (mode === "keep") return EstablishedMode.KEEP;
  if (mode === "sever") return EstablishedMode.SEVER;
  throw new Error(`established must be "keep" or "sever", not ${JSON.stringify(mode)}`);
}

export function cidrToWire(entry: string | CidrSpec): CIDREntry {
  const spec: CidrSpec = typeof entry === "string" ? { cidr: entry } : entry;
  const scope = spec.scope === undefined ? undefined : scopeToWire(spec.scope, `${spec.cidr} scope`);
  return create(CIDREntrySchema, { cidr: spec.cidr, ttl: ttlToWire(spec.ttlSeconds), ...(scope === undefined ? {} : { scope }) });
}

export function domainToWire(entry: string | DomainSpec): DomainEntry {
  const spec: DomainSpec = typeof entry === "string" ? { domain: entry } : entry;
  const scope = spec.scope === undefined ? undefined : scopeToWire(spec.scope, `${spec.domain} scope`);
  return create(DomainEntrySchema, { domain: spec.domain, includeSubdomains: spec.includeSubdomains ?? false, ...(scope === undefined ? {} : { scope }) });
}

export function dnsToWire(dns: DnsSpec): DnsConfig {
  return create(DnsConfigSchema, {
    mode: dnsModeToWire(dns.mode),
    allowDomains: (dns.allow ?? []).map(domainToWire),
    denyDomains: (dns.deny ?? []).map(domainToWire),
    upstreamServers: [...(dns.upstreams ?? [])],
  });
}

export function policyToSubscribedAck(policy: PolicySpec): SubscribedAck {
  return create(SubscribedAckSchema, {
    mode: modeToWire(policy.mode),
    allowCidrs: (policy.allow ?? []).map(cidrToWire),
    denyCidrs: (policy.deny ?? []).map(cidrToWire),
    dns: policy.dns === undefined ? undefined : dnsToWire(policy.dns),
    policyVersion: policy.version ?? "",
    audit: policy.audit ?? false,
    established: establishedToWire(policy.established),
  });
}

export function policyToBulkUpdate(policy: PolicySpec): BulkUpdate {
  return create(BulkUpdateSchema, {
    mode: modeToWire(policy.mode),
    allowCidrs: (policy.allow ?? []).map(cidrToWire),
    denyCidrs: (policy.deny ?? []).map(cidrToWire),
    dns: policy.dns === undefined ? undefined : dnsToWire(policy.dns),
    // Without dns the daemon would turn DNS filtering off (Go semantics); this SDK promises to keep it.
    keepDns: policy.dns === undefined,
    policyVersion: policy.version ?? "",
    audit: policy.audit ?? false,
    established: establishedToWire(policy.established),
  });
}

/** One command → ControlCommand (id = attachment id; commandId "" = no CommandResult wanted). */
export function commandToWire(attachmentId: string, command: Command, commandId: string): ControlCommand {
  const base = { id: attachmentId, commandId };
  switch (command.kind) {
    case "set-mode":
      return create(ControlCommandSchema, { ...base, command: { case: "setMode", value: { mode: modeToWire(command.mode), ...(command.audit === undefined ? {} : { audit: command.audit }) } } });
    case "allow-cidr":
      return create(ControlCommandSchema, { ...base, command: { case: "allowCidr", value: cidrToWire(command) } });
    case "deny-cidr":
      return create(ControlCommandSchema, { ...base, command: { case: "denyCidr", value: cidrToWire(command) } });
    case "remove-cidr":
      return create(ControlCommandSchema, { ...base, command: { case: "removeCidr", value: command.cidr } });
    case "bulk-update":
      return create(ControlCommandSchema, { ...base, command: { case: "bulkUpdate", value: policyToBulkUpdate(command.policy) } });
    case "set-dns-mode":
      return create(ControlCommandSchema, { ...base, command: { case: "setDnsMode", value: { mode: dnsModeToWire(command.mode) } } });
    case "allow-domain":
      return create(ControlCommandSchema, { ...base, command: { case: "allowDomain", value: domainToWire(command) } });
    case "deny-domain":
      return create(ControlCommandSchema, { ...base, command: { case: "denyDomain", value: domainToWire(command) } });
    case "remove-domain":
      return create(ControlCommandSchema, { ...base, command: { case: "removeDomain", value: command.domain } });
  }
}
