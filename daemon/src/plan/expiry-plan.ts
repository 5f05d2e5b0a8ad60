import { formatCidr, parseCidr, type Cidr } from "@netfence/proto/parse";
import type { FilterEntry } from "../policy/compiled.js";
import type { PolicyState, PrefixRules } from "../policy/policy-state.js";
import { withoutExpired } from "../policy/scoped-rules.js";

/**
 * What TTL garbage collection does to one attachment at `nowMs`: expired CIDR rules and learned
 * addresses leave the policy, and each touched prefix is recomputed from what remains (deleted,
 * or rewritten with the remaining flags and deadline). null when nothing is due.
 */
export interface ExpiryPlan {
  readonly deletes: readonly Cidr[];
  readonly upserts: readonly FilterEntry[];
  /** Prefixes touched. */
  readonly count: number;
  /** Prefixes whose allow rule expired (learned addresses inside them are checked again). */
  readonly allowsExpired: readonly Cidr[];
  commit(): void;
}

export function planExpiry(st: PolicyState, nowMs: number): ExpiryPlan | null {
  if (st.nextExpiryMs > nowMs) return null;
  const newRules = new Map<string, PrefixRules | null>();
  const allowsExpired: Cidr[] = [];
  for (const [key, r] of st.rules) {
    // Scoped rules (issue 15) expire one by one too; the prefix goes when none is left.
    const change = withoutExpired(r, nowMs);
    if (change === null) continue;
    if (change.allowExpired) allowsExpired.push(r.cidr);
    newRules.set(key, change.next);
  }
  const expiredLearned = st.learned.expired(nowMs);
  if (newRules.size === 0 && expiredLearned.length === 0) {
    st.recomputeNextExpiry();
    return null;
  }
  const keys = new Set<string>([...newRules.keys(), ...expiredLearned.map((l) => formatCidr(l.cidr))]);
  const upserts: FilterEntry[] = [];
  const deletes: Cidr[] = [];
  for (const key of keys) {
    const cidr = st.rules.get(key)?.cidr ?? parseCidr(key);
    const rules = newRules.has(key) ? newRules.get(key)! : undefined;
    // Learned addresses past their deadline are left out by the compile step itself.
    const entry = st.entryFor(key, cidr, nowMs, rules === undefined ? {} : { rules });
    if (entry === null) deletes.push(cidr);
    else upserts.push(entry);
  }
  return {
    deletes,
    upserts,
    count: keys.size,
    allowsExpired,
    commit: () => {
      for (const [key, r] of newRules) {
        if (r === null) st.rules.delete(key);
        else st.rules.set(key, r);
      }
      for (const l of expiredLearned) st.learned.remove(l.name, formatCidr(l.cidr), true);
      st.recomputeNextExpiry();
    },
  };
}
