import type { StoredOrigins } from "../policy/rule-origins.js";
import { formatCidr, parseCidr, parseRuleScope, type PortRange, type Principal, type RuleScope } from "@netfence/proto/parse";
import type { AttachMethod, TargetSpec } from "../datapath/filter.js";
import type { AttachmentPolicy, CidrRule, DomainRule, EstablishedMode } from "../policy/policy.js";

/** The persisted shape (JSON). CIDRs are stored as canonical text; times as ms since the epoch. */
export interface StoreSnapshot {
  readonly version: 1;
  readonly daemonId: string;
  readonly attachments: readonly StoredAttachment[];
}

export interface StoredCidrRule {
  readonly cidr: string;
  readonly expiresAtMs: number | null;
  /** Issue 15: the rule's scope as parsed (principals with their ids and names); absent = unscoped. */
  readonly scope?: RuleScope;
}

export interface StoredPolicy {
  readonly mode: AttachmentPolicy["mode"];
  readonly audit: boolean;
  readonly allowCidrs: readonly StoredCidrRule[];
  readonly denyCidrs: readonly StoredCidrRule[];
  /** Domain rules keep their `scope` (issue 15) in this same JSON shape. */
  readonly dns: AttachmentPolicy["dns"];
  /** Issue 15: "keep"; absent = "sever" (and in files written before it existed). */
  readonly established?: EstablishedMode;
}

export interface StoredLearned {
  readonly name: string;
  readonly address: string;
  readonly expiresAtMs: number;
}

export interface StoredAttachment {
  readonly id: string;
  readonly slot: number;
  readonly target: TargetSpec;
  /** The target as the caller gave it (list/Subscribed show this). */
  readonly targetText: string;
  readonly dnsPort: number;
  readonly metadata: Readonly<Record<string, string>>;
  readonly attachedAtMs: number;
  readonly method: AttachMethod;
  readonly ifindex: number;
  readonly policy: StoredPolicy;
  /** The old one-object-per-address form: still read, written empty (see attachments/learned-store.ts). */
  readonly learned: readonly StoredLearned[];
  /** Learned addresses, columnar (absent in files written before it existed). */
  readonly learnedPacked?: PackedLearned;
  /** Where the rules came from (explain; policy/rule-origins.ts). Absent in older files, or when nothing is recorded. */
  readonly origins?: StoredOrigins;
}

export const toStoredRule = (key: string, r: CidrRule): StoredCidrRule =>
  r.scope === undefined ? { cidr: key, expiresAtMs: r.expiresAtMs } : { cidr: key, expiresAtMs: r.expiresAtMs, scope: r.scope };
const toStoredRules = (rules: readonly CidrRule[]): StoredCidrRule[] => rules.map((r) => toStoredRule(formatCidr(r.cidr), r));

/**
 * A stored scope, checked again by the shared parser (the file may have been edited). What cannot
 * be read fails closed: a scoped allow is left out, a scoped deny becomes unscoped (denies more).
 */
function loadScope(s: unknown): RuleScope | undefined | null {
  if (s === undefined) return undefined;
  try {
    const o = s as { protocols: unknown; ports: unknown; users: unknown; groups: unknown };
    const ids = (v: unknown): number[] => (v as { id: number }[]).map((p) => p.id);
    const names = (v: unknown): Map<number, string | null> => new Map((v as Principal[]).map((p) => [p.id, typeof p.name === "string" ? p.name : null]));
    const parsed = parseRuleScope({ protocols: o.protocols as number[], ports: o.ports as PortRange[], users: ids(o.users), groups: ids(o.groups) });
    if (parsed === undefined) return undefined;
    const un = names(o.users);
    const gn = names(o.groups);
    return {
      ...parsed,
      users: parsed.users.map((p) => ({ id: p.id, name: un.get(p.id) ?? null })),
      groups: parsed.groups.map((p) => ({ id: p.id, name: gn.get(p.id) ?? null })),
    };
  } catch {
    return null;
  }
}

function fromStoredRules(rules: readonly StoredCidrRule[], kind: "allow" | "deny"): CidrRule[] {
  const out: CidrRule[] = [];
  for (const r of rules) {
    const cidr = parseCidr(r.cidr);
    const scope = loadScope(r.scope);
    if (scope === null && kind === "allow") continue;
    out.push(scope === undefined || scope === null ? { cidr, expiresAtMs: r.expiresAtMs } : { cidr, expiresAtMs: r.expiresAtMs, scope });
  }
  return out;
}

function loadDns(dns: AttachmentPolicy["dns"]): AttachmentPolicy["dns"] {
  if (!dns.allowDomains.some((d) => d.scope !== undefined) && !dns.denyDomains.some((d) => d.scope !== undefined)) return dns;
  const allowDomains: DomainRule[] = [];
  for (const d of dns.allowDomains) {
    const scope = loadScope(d.scope);
    if (scope === null) continue;
    allowDomains.push(scope === undefined ? { domain: d.domain, includeSubdomains: d.includeSubdomains } : { domain: d.domain, includeSubdomains: d.includeSubdomains, scope });
  }
  const denyDomains = dns.denyDomains.map((d) => ({ domain: d.domain, includeSubdomains: d.includeSubdomains }));
  return { ...dns, allowDomains, denyDomains };
}

export function storePolicy(p: AttachmentPolicy): StoredPolicy {
  return {
    mode: p.mode, audit: p.audit, allowCidrs: toStoredRules(p.allowCidrs), denyCidrs: toStoredRules(p.denyCidrs), dns: p.dns,
    ...(p.established === "keep" ? { established: "keep" as const } : {}),
  };
}

export function loadPolicy(p: StoredPolicy): AttachmentPolicy {
  return {
    mode: p.mode, audit: p.audit, allowCidrs: fromStoredRules(p.allowCidrs, "allow"), denyCidrs: fromStoredRules(p.denyCidrs, "deny"), dns: loadDns(p.dns),
    ...(p.established === "keep" ? { established: "keep" as const } : {}),
  };
}

/** The compact stored form of an attachment's learned addresses (attachments/learned-store.ts packs and unpacks it). */
export interface PackedLearned {
  readonly format: 1;
  readonly names: readonly string[];
  readonly nameIndexBytes: 2 | 4;
  readonly nameIndex: string;
  readonly v4: string;
  readonly v6: string;
  readonly baseMs: number;
  readonly expiresAfterBase: string;
}
