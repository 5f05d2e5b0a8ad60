import { formatCidr, parseCidr, type Cidr } from "@netfence/proto/parse";
import type { FilterEntry } from "../policy/compiled.js";
import type { PolicyState, PrefixRules } from "../policy/policy-state.js";

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
  const dead = (ms: number | null | undefined): boolean => ms !== null && ms !== undefined && ms <= nowMs;
  const newRules = new Map<string, PrefixRules | null>();
  const allowsExpired: Cidr[] = [];
  for (const [key, r] of st.rules) {
    const allowDead = r.allow !== null && dead(r.allow.expiresAtMs);
    const denyDead = r.deny !== null && dead(r.deny.expiresAtMs);
    if (!allowDead && !denyDead) continue;
    if (allowDead) allowsExpired.push(r.cidr);
    const allow = allowDead ? null : r.allow;
    const deny = denyDead ? null : r.deny;
    newRules.set(key, allow === null && deny === null ? null : { cidr: r.cidr, allow, deny });
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
