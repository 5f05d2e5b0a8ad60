import { formatCidr, type Cidr } from "@netfence/proto/parse";
import type { FilterEntry } from "../policy/compiled.js";
import { allowanceCovers } from "../policy/learned-dedupe.js";
import type { PolicyState } from "../policy/policy-state.js";
import type { LearnedGuard, LearnedRefusal } from "./learned-guard.js";

/**
 * What recording a batch of DNS answers for one attachment does: the kernel entries to upsert
 * (one per address, merged with its rules and other names' deadlines), the addresses refused,
 * and a commit recording name → address → deadline.
 *
 * Refused (never opened, never recorded):
 * - what the rebinding guard refuses (learned-guard.ts: a deny CIDR, protected-deny, loopback,
 *   link-local, metadata, the host's own addresses, … unless a CIDR rule allows it explicitly);
 * - a NEW address beyond the attachment's learned-address quota (`learnedQuota` distinct
 *   addresses; an address already learned, by any name, costs nothing more).
 *
 * An address the kernel already allows long enough (the one dedupe rule, policy/learned-dedupe.ts)
 * is not rewritten; it keeps the deadline the kernel has, so memory never outlives the map.
 *
 * The answers arrive as the DNS server's LearnedInserter handed them over: host prefixes as bytes
 * from the DNS wire, the TTL floor applied (the one floor, learned-inserter.ts). Nothing here
 * parses or floors again.
 */
export interface LearnedAnswer {
  readonly name: string;
  readonly addresses: readonly Cidr[];
  readonly ttlSeconds: number;
}

export interface RefusedAnswerAddress {
  readonly name: string;
  readonly address: Cidr;
  readonly reason: LearnedRefusal;
}

export interface LearnedPlan {
  readonly upserts: readonly FilterEntry[];
  readonly refused: readonly RefusedAnswerAddress[];
  /** Addresses the commit records (0: nothing changes, nothing to save). */
  readonly additions: number;
  /**
   * After commit: per name, the earliest deadline (ms) of the learned records this batch recorded
   * for it — the answer's, or the kernel entry's when that was already long enough and earlier.
   * The kernel holds an address at least while a record of it lives (a rule that also allows it
   * may go; the record stays), so this is what the DNS server may rely on (answer cache, dedupe).
   */
  readonly heldUntilMs: ReadonlyMap<string, number>;
  commit(): void;
}

export interface LearnedLimits {
  /** Distinct learned addresses this attachment may hold (Infinity = no limit). */
  readonly learnedQuota: number;
  readonly guard: LearnedGuard | null;
}

export function planLearned(st: PolicyState, answers: readonly LearnedAnswer[], nowMs: number, limits: LearnedLimits): LearnedPlan {
  const additions: { name: string; cidr: Cidr; key: string; ttlSeconds: number; expiresAtMs: number }[] = [];
  const refused: RefusedAnswerAddress[] = [];
  const verdicts = new Map<string, LearnedRefusal | null>();
  let room = limits.learnedQuota - st.learned.size;
  for (const ans of answers) {
    const deadline = nowMs + ans.ttlSeconds * 1000;
    for (const cidr of ans.addresses) {
      const key = formatCidr(cidr);
      let reason = verdicts.get(key);
      if (reason === undefined) {
        reason = limits.guard?.check(cidr, key, st.rules, nowMs) ?? null;
        if (reason === null && !st.learned.hasPrefix(key)) {
          if (room > 0) room--;
          else reason = "quota";
        }
        verdicts.set(key, reason);
      }
      if (reason !== null) refused.push({ name: ans.name, address: cidr, reason });
      // Its own bytes: the answer's are a view into the DNS reply (dns-wire.ts), which must not stay pinned.
      else additions.push({ name: ans.name, cidr: { family: cidr.family, addr: cidr.addr.slice(), prefixLen: cidr.prefixLen }, key, ttlSeconds: ans.ttlSeconds, expiresAtMs: deadline });
    }
  }
  const upserts = new Map<string, FilterEntry>();
  const heldUntilMs = new Map<string, number>();
  for (const a of additions) {
    const current = st.entryFor(a.key, a.cidr, nowMs);
    if (current !== null && current.allow && allowanceCovers(current.expiresAtMs, a.ttlSeconds, nowMs)) continue;
    const learned = [...st.learned.forPrefix(a.key), { name: a.name, cidr: a.cidr, expiresAtMs: a.expiresAtMs }];
    const entry = st.entryFor(a.key, a.cidr, nowMs, { learned });
    if (entry !== null) upserts.set(a.key, entry);
  }
  return {
    upserts: [...upserts.values()],
    refused,
    additions: additions.length,
    heldUntilMs,
    commit: () => {
      for (const a of additions) {
        const kernelEntry = upserts.get(a.key) ?? st.entryFor(a.key, a.cidr, nowMs);
        const deadline = upserts.has(a.key) ? a.expiresAtMs : Math.min(a.expiresAtMs, kernelEntry?.expiresAtMs ?? a.expiresAtMs);
        st.learned.add(a.name, a.cidr, deadline, a.key, { learnedAtMs: nowMs, ttlSeconds: a.ttlSeconds });
        st.noteDeadline(deadline);
        heldUntilMs.set(a.name, Math.min(heldUntilMs.get(a.name) ?? Infinity, deadline));
      }
    },
  };
}
