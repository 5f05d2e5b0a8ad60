import { formatCidr, parseCidr, type Cidr } from "../policy/cidr.js";
import type { FilterEntry } from "../datapath/filter.js";
import type { ResolvedAddress } from "../dns/resolved-allower.js";
import type { PolicyState } from "./policy-state.js";

/**
 * What recording a batch of DNS answers for one attachment does: the kernel entries to upsert
 * (one per address, merged with its rules and other names' deadlines) and a commit recording
 * name → address → deadline. An address the kernel already allows for at least half of the new
 * TTL is not rewritten (a busy name does not cost a map update per query); it keeps the deadline
 * the kernel has, so memory never outlives the map.
 */
export interface ResolvedAnswer {
  readonly name: string;
  readonly addresses: readonly ResolvedAddress[];
  readonly ttlSeconds: number;
}

export interface LearnedPlan {
  readonly upserts: readonly FilterEntry[];
  commit(): void;
}

export function planLearned(st: PolicyState, answers: readonly ResolvedAnswer[], nowMs: number, minTtlSeconds: number): LearnedPlan {
  const additions: { name: string; cidr: Cidr; key: string; expiresAtMs: number }[] = [];
  for (const ans of answers) {
    const ttl = ans.ttlSeconds > 0 ? ans.ttlSeconds : minTtlSeconds;
    const deadline = nowMs + ttl * 1000;
    for (const a of ans.addresses) {
      let cidr: Cidr;
      try {
        cidr = parseCidr(a.address);
      } catch {
        continue;
      }
      additions.push({ name: ans.name, cidr, key: formatCidr(cidr), expiresAtMs: deadline });
    }
  }
  const upserts = new Map<string, FilterEntry>();
  for (const a of additions) {
    const current = st.entryFor(a.key, a.cidr, nowMs);
    const slack = (a.expiresAtMs - nowMs) / 2;
    if (current !== null && current.allow && (current.expiresAtMs === null || current.expiresAtMs >= a.expiresAtMs - slack)) continue;
    const learned = [...st.learned.forPrefix(a.key), { name: a.name, cidr: a.cidr, expiresAtMs: a.expiresAtMs }];
    const entry = st.entryFor(a.key, a.cidr, nowMs, { learned });
    if (entry !== null) upserts.set(a.key, entry);
  }
  return {
    upserts: [...upserts.values()],
    commit: () => {
      for (const a of additions) {
        const kernelEntry = upserts.get(a.key) ?? st.entryFor(a.key, a.cidr, nowMs);
        const deadline = upserts.has(a.key) ? a.expiresAtMs : Math.min(a.expiresAtMs, kernelEntry?.expiresAtMs ?? a.expiresAtMs);
        st.learned.add(a.name, a.cidr, deadline);
        st.noteDeadline(deadline);
      }
    },
  };
}
