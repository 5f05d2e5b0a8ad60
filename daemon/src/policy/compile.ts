import { formatCidr, type Cidr } from "@netfence/proto/parse";
import type { AttachmentPolicy } from "./policy.js";
import type { FilterEntry, FilterPolicy } from "./compiled.js";
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
 * its deny rule, else its allow rule, else the domain rule of its first live learned name.
 */
export interface RuleStamper {
  cidr(kind: "allow" | "deny", prefixKey: string): number;
  learned(name: string): number;
}

/**
 * The entry one prefix should have from its rules and learned deadlines, or null when nothing live
 * remains; with a stamper, carrying its deciding rule's id (`key`: the prefix's canonical text).
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
  const live = (deadline: number | null): boolean => deadline === null || deadline > nowMs;
  const take = (deadline: number | null, isDeny: boolean): void => {
    if (isDeny) deny = true;
    else allow = true;
    expiresAtMs = expiresAtMs === undefined ? deadline : expiresAtMs === null || deadline === null ? null : Math.max(expiresAtMs, deadline);
  };
  if (rules !== null) {
    if (rules.allow !== null && live(rules.allow.expiresAtMs)) {
      take(rules.allow.expiresAtMs, false);
      ruleAllow = true;
    }
    if (rules.deny !== null && live(rules.deny.expiresAtMs)) take(rules.deny.expiresAtMs, true);
  }
  for (const l of learned) {
    if (!live(l.expiresAtMs)) continue;
    take(l.expiresAtMs, false);
    if (learnedName === null && "name" in l && typeof l.name === "string") learnedName = l.name;
  }
  if (expiresAtMs === undefined) return null;
  if (stamp === null) return { cidr, allow, deny, expiresAtMs, ruleId: 0 };
  const k = key ?? formatCidr(cidr);
  const ruleId = deny ? stamp.cidr("deny", k) : ruleAllow ? stamp.cidr("allow", k) : learnedName !== null ? stamp.learned(learnedName) : 0;
  return { cidr, allow, deny, expiresAtMs, ruleId };
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

export function compilePolicy(policy: AttachmentPolicy, learned: Iterable<LearnedAddress>, nowMs: number): FilterPolicy {
  return { mode: policy.mode, audit: policy.audit, entries: compileEntries(policy, learned, nowMs) };
}
