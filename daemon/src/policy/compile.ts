import { formatCidr, type Cidr, type RuleScope } from "@netfence/proto/parse";
import { scopeRuleKey } from "./scoped-rules.js";
import type { AttachmentPolicy } from "./policy.js";
import type { FilterEntry, FilterPolicy, ScopedRuleEntry } from "./compiled.js";
import { learnedScopes } from "./learned-scope.js";
import { indexRules, type PrefixRules } from "./rule-index.js";

/**
 * Pure compile step: control-plane CIDR rules + DNS-learned addresses → one kernel entry per
 * unique prefix. Allow and deny flags are merged per prefix (the kernel lets deny win at equal
 * prefix); the entry's deadline is the latest of its live rules, and a permanent rule (null) wins.
 * Rules already expired at `nowMs` are dropped.
 *
 * The planners compile straight from the prefix-keyed indexes they keep (`compileIndexed`): rules
 * are keyed by their canonical prefix once, when they enter the index, and never re-keyed here.
 */

export interface LearnedAddress {
  /** /32 or /128 of an address a DNS answer produced. */
  readonly cidr: Cidr;
  readonly expiresAtMs: number;
}

/** Rules keyed by canonical prefix text (a RuleIndex, or a Map in tests and tools). */
export interface RulesByPrefix extends Iterable<[string, PrefixRules]> {
  has(key: string): boolean;
}

/** Learned addresses keyed by the same prefix text (LearnedAddresses). */
export interface LearnedByPrefix<L extends LearnedAddress = LearnedAddress> {
  hasPrefix(key: string): boolean;
  forPrefix(key: string): readonly L[];
  prefixes(): Iterable<[string, Cidr]>;
}

const NONE: readonly LearnedAddress[] = [];

/**
 * Gives a kernel entry the id of the rule that decides a packet matching it (policy/rule-ids.ts):
 * its deny rule, else its allow rule, else the domain rule of its first live learned name. Scoped
 * rules (issue 15) each get their own id: `cidr` with the scope's text appended to the prefix key
 * ("10.0.0.0/8 tcp/443", scoped-rules.ts scopeRuleKey), learned names their domain rule's.
 */
export interface RuleStamper {
  cidr(kind: "allow" | "deny", prefixKey: string): number;
  learned(name: string): number;
  /** The scopes a learned name's addresses are limited to (learned-scope.ts); null or absent = unscoped. */
  learnedScopes?(name: string): readonly RuleScope[] | null;
}

/**
 * The entry one prefix should have from its rules and learned deadlines, or null when nothing live
 * remains; with a stamper, carrying its deciding rule's id (`key`: the prefix's canonical text).
 * `allow`/`deny` are the unscoped rules' (and unscoped learned names'); the scoped rules and the
 * learned names with scoped domain rules become `scoped` entries. The entry's own deadline is the
 * latest of everything live on it (the kernel entry must outlive each of its scoped rules).
 * The stamper is asked for the scoped ids first and for the entry's own id last (rule-ids-restore.ts
 * records the last key asked).
 */
export function entryOf(
  cidr: Cidr,
  rules: PrefixRules | null,
  learned: Iterable<LearnedAddress>,
  nowMs: number,
  stamp: RuleStamper | null = null,
  key: string | null = null,
): FilterEntry | null {
  let allow = false;
  let deny = false;
  let ruleAllow = false;
  let learnedName: string | null = null;
  let expiresAtMs: number | null | undefined;
  let scoped: ScopedRuleEntry[] | null = null;
  const live = (deadline: number | null): boolean => deadline === null || deadline > nowMs;
  const extend = (deadline: number | null): void => {
    expiresAtMs = expiresAtMs === undefined ? deadline : expiresAtMs === null || deadline === null ? null : Math.max(expiresAtMs, deadline);
  };
  const take = (deadline: number | null, isDeny: boolean): void => {
    if (isDeny) deny = true;
    else allow = true;
    extend(deadline);
  };
  const k = (): string => key ?? formatCidr(cidr);
  if (rules !== null) {
    if (rules.allow !== null && live(rules.allow.expiresAtMs)) {
      take(rules.allow.expiresAtMs, false);
      ruleAllow = true;
    }
    if (rules.deny !== null && live(rules.deny.expiresAtMs)) take(rules.deny.expiresAtMs, true);
    if (rules.scoped !== undefined) {
      for (const s of rules.scoped) {
        for (const [rule, isDeny] of [[s.allow, false], [s.deny, true]] as const) {
          if (rule === null || !live(rule.expiresAtMs)) continue;
          extend(rule.expiresAtMs);
          const ruleId = stamp === null ? 0 : stamp.cidr(isDeny ? "deny" : "allow", `${k()} ${s.key}`);
          (scoped ??= []).push({ scope: s.scope, allow: !isDeny, deny: isDeny, ruleId, expiresAtMs: rule.expiresAtMs });
        }
      }
    }
  }
  let learnedScoped: Map<string, { scope: RuleScope; ruleId: number; expiresAtMs: number }> | null = null;
  for (const l of learned) {
    if (!live(l.expiresAtMs)) continue;
    const name = "name" in l && typeof l.name === "string" ? l.name : null;
    const scopes = name === null || stamp?.learnedScopes === undefined ? null : stamp.learnedScopes(name);
    if (scopes === null) {
      take(l.expiresAtMs, false);
      if (learnedName === null && name !== null) learnedName = name;
      continue;
    }
    extend(l.expiresAtMs);
    const ruleId = stamp!.learned(name!);
    for (const scope of scopes) {
      const id = `${ruleId} ${scopeRuleKey(scope)}`;
      const prev = (learnedScoped ??= new Map()).get(id);
      if (prev === undefined || prev.expiresAtMs < l.expiresAtMs) learnedScoped.set(id, { scope, ruleId, expiresAtMs: l.expiresAtMs });
    }
  }
  if (expiresAtMs === undefined) return null;
  if (learnedScoped !== null) {
    for (const e of learnedScoped.values()) (scoped ??= []).push({ scope: e.scope, allow: true, deny: false, ruleId: e.ruleId, expiresAtMs: e.expiresAtMs });
  }
  const extra = scoped === null ? {} : { scoped };
  if (stamp === null) return { cidr, allow, deny, expiresAtMs, ruleId: 0, ...extra };
  const ruleId = deny ? stamp.cidr("deny", k()) : ruleAllow ? stamp.cidr("allow", k()) : learnedName !== null ? stamp.learned(learnedName) : 0;
  return { cidr, allow, deny, expiresAtMs, ruleId, ...extra };
}

/**
 * Every entry: the rule prefixes (unique in their index) merged with the learned prefixes by the
 * same key; `drop` leaves learned records out (the ones a plan removes).
 */
export function compileIndexed<L extends LearnedAddress>(
  rules: RulesByPrefix,
  learned: LearnedByPrefix<L>,
  nowMs: number,
  drop: ((l: L) => boolean) | null = null,
  stamp: RuleStamper | null = null,
): FilterEntry[] {
  const learnedAt = (key: string): readonly L[] => {
    if (!learned.hasPrefix(key)) return [];
    const all = learned.forPrefix(key);
    return drop === null ? all : all.filter((l) => !drop(l));
  };
  const out: FilterEntry[] = [];
  for (const [key, r] of rules) {
    const e = entryOf(r.cidr, r, learnedAt(key), nowMs, stamp, key);
    if (e !== null) out.push(e);
  }
  for (const [key, cidr] of learned.prefixes()) {
    if (rules.has(key)) continue;
    const e = entryOf(cidr, null, learnedAt(key), nowMs, stamp, key);
    if (e !== null) out.push(e);
  }
  return out;
}

/** A learned-address list as a prefix index (callers that hold plain lists). */
function learnedIndex(learned: Iterable<LearnedAddress>): LearnedByPrefix {
  const byKey = new Map<string, LearnedAddress[]>();
  for (const l of learned) {
    const key = formatCidr(l.cidr);
    const list = byKey.get(key);
    if (list === undefined) byKey.set(key, [l]);
    else list.push(l);
  }
  return {
    hasPrefix: (key) => byKey.has(key),
    forPrefix: (key) => byKey.get(key) ?? NONE,
    *prefixes() {
      for (const [key, list] of byKey) yield [key, list[0]!.cidr];
    },
  };
}

/** Compiles rule lists (a policy as parsed) and a learned list: indexed once, then compiled. */
export function compileEntries(
  policy: Pick<AttachmentPolicy, "allowCidrs" | "denyCidrs">,
  learned: Iterable<LearnedAddress>,
  nowMs: number,
): FilterEntry[] {
  return compileIndexed(indexRules(policy.allowCidrs, policy.denyCidrs), learnedIndex(learned), nowMs);
}

/** The entry one prefix should have now from a policy and learned list, or null. */
export function compilePrefix(
  policy: Pick<AttachmentPolicy, "allowCidrs" | "denyCidrs">,
  learned: Iterable<LearnedAddress>,
  cidr: Cidr,
  nowMs: number,
): FilterEntry | null {
  const key = formatCidr(cidr);
  return entryOf(cidr, indexRules(policy.allowCidrs, policy.denyCidrs).get(key) ?? null, learnedIndex(learned).forPrefix(key), nowMs);
}

/** A whole policy (without rule ids: every entry carries 0); learned names get their domain rules' scopes. */
export function compilePolicy(policy: AttachmentPolicy, learned: Iterable<LearnedAddress>, nowMs: number): FilterPolicy {
  const stamp: RuleStamper = { cidr: () => 0, learned: () => 0, learnedScopes: (name) => learnedScopes(policy.dns, name) };
  const entries = compileIndexed(indexRules(policy.allowCidrs, policy.denyCidrs), learnedIndex(learned), nowMs, null, stamp);
  return { mode: policy.mode, audit: policy.audit, entries, ...(policy.established === "keep" ? { keepEstablished: true } : {}) };
}
