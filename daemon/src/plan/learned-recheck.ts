import { cidrContains, formatCidr, type Cidr } from "@netfence/proto/parse";
import type { FilterEntry } from "../policy/compiled.js";
import type { LearnedRecord } from "../policy/learned-addresses.js";
import type { LearnedGuard, LearnedRefusal } from "./learned-guard.js";
import type { PolicyState } from "../policy/policy-state.js";
import type { RuleIndex, RuleOverride } from "../policy/rule-index.js";

/**
 * Re-checking learned addresses against the rebinding guard after something they depend on
 * changed: a deny CIDR added (a learned /32 inside it would otherwise still win the kernel's
 * longest-prefix match), an explicit allow removed or expired, the host's addresses, or the
 * operator's protected-deny set (at start). Refusal is per address, so every name holding a
 * refused address loses it.
 */
export interface RefusedLearned {
  readonly name: string;
  /** Canonical prefix text ("10.0.0.1/32"). */
  readonly key: string;
  readonly cidr: Cidr;
  readonly reason: LearnedRefusal;
}

export interface RecheckOptions {
  /** Only addresses inside this prefix can have changed (default: all). */
  readonly scope?: Cidr;
  /** A rule change not yet committed, seen as applied. */
  readonly override?: RuleOverride;
}

/** The learned records `guard` refuses under `rules` at `nowMs`. */
export function refusedLearned(st: PolicyState, guard: LearnedGuard, rules: RuleIndex, nowMs: number, opts: RecheckOptions = {}): RefusedLearned[] {
  const out: RefusedLearned[] = [];
  const consider = (key: string, cidr: Cidr): void => {
    const reason = guard.check(cidr, key, rules, nowMs, opts.override);
    if (reason === null) return;
    for (const name of st.learned.namesOf(key)) out.push({ name, key, cidr, reason });
  };
  const scope = opts.scope;
  if (st.learned.size === 0) return out;
  if (scope !== undefined && scope.prefixLen === (scope.family === 4 ? 32 : 128)) {
    const key = formatCidr(scope);
    if (st.learned.hasPrefix(key)) consider(key, scope);
    return out;
  }
  for (const [key, cidr] of st.learned.prefixes()) {
    if (scope === undefined || cidrContains(scope, cidr)) consider(key, cidr);
  }
  return out;
}

/** A predicate for PolicyState.compile leaving out the refused records. */
export function dropRefused(refused: readonly RefusedLearned[]): (l: LearnedRecord) => boolean {
  const keys = new Set(refused.map((r) => r.key));
  return (l) => keys.has(formatCidr(l.cidr));
}

export interface RecheckPlan {
  readonly refused: readonly RefusedLearned[];
  /** Entries to rewrite (a rule of the same prefix remains) and prefixes to delete. */
  readonly upserts: readonly FilterEntry[];
  readonly deletes: readonly Cidr[];
  commit(): void;
}

/** What removing the learned addresses the guard now refuses does; null when none is refused. */
export function planRecheck(st: PolicyState, guard: LearnedGuard, nowMs: number, opts: RecheckOptions = {}): RecheckPlan | null {
  const refused = refusedLearned(st, guard, st.rules, nowMs, opts);
  if (refused.length === 0) return null;
  const upserts: FilterEntry[] = [];
  const deletes: Cidr[] = [];
  const seen = new Set<string>();
  for (const r of refused) {
    if (seen.has(r.key)) continue;
    seen.add(r.key);
    const entry = st.entryFor(r.key, r.cidr, nowMs, { learned: [] });
    if (entry === null) deletes.push(r.cidr);
    else upserts.push(entry);
  }
  return {
    refused,
    upserts,
    deletes,
    commit: () => {
      for (const r of refused) st.learned.remove(r.name, r.key);
      st.recomputeNextExpiry();
    },
  };
}
