import { isUnscoped, protocolName, type Cidr, type RuleScope } from "@netfence/proto/parse";
import type { CidrRule } from "./policy.js";

/**
 * The rules of one prefix (issue 15): a rule is named by (cidr, scope). The unscoped rules of a
 * prefix are `allow`/`deny` (as before scopes existed); each distinct scope has its own pair in
 * `scoped`, sorted by scope key. AllowCIDR of a prefix replaces the (cidr, scope) rule it names —
 * an allow replaces a deny of the same scope and vice versa, other scopes stay; RemoveCIDR removes
 * every rule of the prefix, whatever its scope (docs/operator-guide.md "Scoped rules").
 */
export interface PrefixRules {
  readonly cidr: Cidr;
  /** The unscoped allow rule. */
  readonly allow: CidrRule | null;
  /** The unscoped deny rule. */
  readonly deny: CidrRule | null;
  /** Scoped rules, one pair per distinct scope, sorted by `key`; absent or empty = none. */
  readonly scoped?: readonly ScopedRules[];
}

export interface ScopedRules {
  /** scopeRuleKey(scope): equal scopes, equal keys; also the rule's text after its prefix in rule ids and listings. */
  readonly key: string;
  readonly scope: RuleScope;
  readonly allow: CidrRule | null;
  readonly deny: CidrRule | null;
}

export type RuleKind = "allow" | "deny";

/**
 * The canonical text of a scope, by ids (names are not part of a rule's identity): "tcp/443,8000-8100
 * users=33", "icmp", "tcp,udp/53 groups=50", "users=0". Equal scopes give equal texts (protocols and
 * ids sorted, ports merged: the parser's output). It names a scoped rule after its prefix — in its
 * rule id key ("allow-cidr 10.0.0.0/24 tcp/443 users=33"), which `netfenced rules` and the heartbeat
 * rule hits show.
 */
export function scopeRuleKey(scope: RuleScope): string {
  const parts: string[] = [];
  const protos = scope.protocols.map(protocolName).join(",");
  const ports = scope.ports.map((r) => (r.from === r.to ? `${r.from}` : `${r.from}-${r.to}`)).join(",");
  if (protos !== "" || ports !== "") parts.push(ports === "" ? protos : `${protos === "" ? "any" : protos}/${ports}`);
  if (scope.users.length > 0) parts.push(`users=${scope.users.map((p) => p.id).join(",")}`);
  if (scope.groups.length > 0) parts.push(`groups=${scope.groups.map((p) => p.id).join(",")}`);
  return parts.join(" ");
}

export function isLive(rule: CidrRule | null, nowMs: number): rule is CidrRule {
  return rule !== null && (rule.expiresAtMs === null || rule.expiresAtMs > nowMs);
}

/** Of two rules for one (prefix, scope), the longer-lived (null = permanent wins; the first at a tie). */
export function longestLived(prev: CidrRule | null, r: CidrRule): CidrRule {
  if (prev === null) return r;
  if (prev.expiresAtMs === null) return prev;
  return r.expiresAtMs === null || r.expiresAtMs > prev.expiresAtMs ? r : prev;
}

function withScoped(cur: PrefixRules, scoped: ScopedRules[]): PrefixRules {
  return scoped.length === 0 ? { cidr: cur.cidr, allow: cur.allow, deny: cur.deny } : { cidr: cur.cidr, allow: cur.allow, deny: cur.deny, scoped };
}

/** Sets the scoped pair `key` (null pair = removed), keeping the list sorted. */
function putScoped(list: readonly ScopedRules[] | undefined, pair: ScopedRules, keepEmpty = false): ScopedRules[] {
  if (list === undefined || list.length === 0) return keepEmpty || pair.allow !== null || pair.deny !== null ? [pair] : [];
  const out = (list ?? []).filter((s) => s.key !== pair.key);
  if (keepEmpty || pair.allow !== null || pair.deny !== null) out.push(pair);
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/**
 * A rule as one entry of a rule LIST (a BulkUpdate, a SubscribedAck, a policy file) adds to what
 * the list already holds for its prefix: allow and deny of one (prefix, scope) may both be there;
 * duplicates keep the longest-lived.
 */
export function addListRule(cur: PrefixRules | undefined, kind: RuleKind, rule: CidrRule): PrefixRules {
  const base: PrefixRules = cur ?? { cidr: rule.cidr, allow: null, deny: null };
  if (isUnscoped(rule.scope)) {
    const allow = kind === "allow" ? longestLived(base.allow, rule) : base.allow;
    const deny = kind === "deny" ? longestLived(base.deny, rule) : base.deny;
    return base.scoped === undefined ? { cidr: base.cidr, allow, deny } : { cidr: base.cidr, allow, deny, scoped: base.scoped };
  }
  const key = scopeRuleKey(rule.scope!);
  if (cur === undefined) {
    // The common case of a list: the prefix's first rule.
    const pair: ScopedRules = { key, scope: rule.scope!, allow: kind === "allow" ? rule : null, deny: kind === "deny" ? rule : null };
    return { cidr: rule.cidr, allow: null, deny: null, scoped: [pair] };
  }
  const prev = base.scoped?.find((s) => s.key === key);
  const pair: ScopedRules = {
    key,
    scope: prev?.scope ?? rule.scope!,
    allow: kind === "allow" ? longestLived(prev?.allow ?? null, rule) : (prev?.allow ?? null),
    deny: kind === "deny" ? longestLived(prev?.deny ?? null, rule) : (prev?.deny ?? null),
  };
  return withScoped(base, putScoped(base.scoped, pair));
}

/** A single-rule command (AllowCIDR / DenyCIDR): the (prefix, scope) rule becomes `rule`, other scopes stay. */
export function setCommandRule(cur: PrefixRules | undefined, kind: RuleKind, rule: CidrRule): PrefixRules {
  const base: PrefixRules = cur ?? { cidr: rule.cidr, allow: null, deny: null };
  if (isUnscoped(rule.scope)) {
    const next = { cidr: base.cidr, allow: kind === "allow" ? rule : null, deny: kind === "deny" ? rule : null };
    return base.scoped === undefined || base.scoped.length === 0 ? next : { ...next, scoped: base.scoped };
  }
  const key = scopeRuleKey(rule.scope!);
  const pair: ScopedRules = { key, scope: rule.scope!, allow: kind === "allow" ? rule : null, deny: kind === "deny" ? rule : null };
  return withScoped(base, putScoped(base.scoped, pair));
}

/** Every rule of a prefix with its kind and scope key ("" = unscoped). */
export function* rulesOf(r: PrefixRules): IterableIterator<[RuleKind, CidrRule, string]> {
  if (r.allow !== null) yield ["allow", r.allow, ""];
  if (r.deny !== null) yield ["deny", r.deny, ""];
  for (const s of r.scoped ?? []) {
    if (s.allow !== null) yield ["allow", s.allow, s.key];
    if (s.deny !== null) yield ["deny", s.deny, s.key];
  }
}

/** True when some rule of the prefix (unscoped or scoped) is live. */
export function anyLive(r: PrefixRules, nowMs: number): boolean {
  if (isLive(r.allow, nowMs) || isLive(r.deny, nowMs)) return true;
  for (const s of r.scoped ?? []) if (isLive(s.allow, nowMs) || isLive(s.deny, nowMs)) return true;
  return false;
}

/** True when some deny rule of the prefix (unscoped or scoped) is live. */
export function anyDenyLive(r: PrefixRules, nowMs: number): boolean {
  if (isLive(r.deny, nowMs)) return true;
  for (const s of r.scoped ?? []) if (isLive(s.deny, nowMs)) return true;
  return false;
}

/**
 * The prefix without its rules dead at `nowMs`: null = nothing changes; `next` null = no rule is
 * left; `allowExpired` = an allow rule (of any scope) went.
 */
export function withoutExpired(r: PrefixRules, nowMs: number): { next: PrefixRules | null; allowExpired: boolean } | null {
  const dead = (rule: CidrRule | null): boolean => rule !== null && rule.expiresAtMs !== null && rule.expiresAtMs <= nowMs;
  let changed = false;
  let allowExpired = false;
  const keep = (rule: CidrRule | null, isAllow: boolean): CidrRule | null => {
    if (!dead(rule)) return rule;
    changed = true;
    if (isAllow) allowExpired = true;
    return null;
  };
  const allow = keep(r.allow, true);
  const deny = keep(r.deny, false);
  const scoped: ScopedRules[] = [];
  for (const s of r.scoped ?? []) {
    const sa = keep(s.allow, true);
    const sd = keep(s.deny, false);
    if (sa !== null || sd !== null) scoped.push(sa === s.allow && sd === s.deny ? s : { key: s.key, scope: s.scope, allow: sa, deny: sd });
  }
  if (!changed) return null;
  if (allow === null && deny === null && scoped.length === 0) return { next: null, allowExpired };
  return { next: scoped.length === 0 ? { cidr: r.cidr, allow, deny } : { cidr: r.cidr, allow, deny, scoped }, allowExpired };
}

/** The same rules (kinds, scopes, deadlines) on both. */
export function samePrefixRules(a: PrefixRules, b: PrefixRules): boolean {
  const same = (x: CidrRule | null, y: CidrRule | null): boolean => (x === null ? y === null : y !== null && x.expiresAtMs === y.expiresAtMs);
  if (!same(a.allow, b.allow) || !same(a.deny, b.deny)) return false;
  const sa = a.scoped ?? [];
  const sb = b.scoped ?? [];
  return sa.length === sb.length && sa.every((s, i) => s.key === sb[i]!.key && same(s.allow, sb[i]!.allow) && same(s.deny, sb[i]!.deny));
}

/** The earliest deadline among the prefix's rules (Infinity = none). */
export function earliestDeadline(r: PrefixRules): number {
  let next = Infinity;
  for (const [, rule] of rulesOf(r)) if (rule.expiresAtMs !== null && rule.expiresAtMs < next) next = rule.expiresAtMs;
  return next;
}
