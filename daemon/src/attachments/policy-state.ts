import { formatCidr, type Cidr } from "@netfence/proto/parse";
import { compileEntries, compilePrefix, type LearnedAddress } from "../policy/compile.js";
import type { FilterEntry, FilterMode, FilterPolicy } from "../datapath/filter.js";
import type { AttachmentPolicy, CidrRule, DnsPolicy } from "../policy/policy.js";
import { LearnedAddresses, type LearnedRecord } from "./learned-addresses.js";
import { RuleIndex, type PrefixRules } from "./rule-index.js";
import type { StoredCidrRule, StoredPolicy } from "../store/snapshot.js";
import { packLearned, type PackedLearned } from "./learned-store.js";

export type { PrefixRules } from "./rule-index.js";

/**
 * One attachment's live policy as the manager keeps it: CIDR rules indexed by prefix (so a
 * single-prefix command costs O(1), also in a burst of 10k commands), DNS rules, and the
 * addresses learned from DNS answers. Mutated only by a committed plan (see command-plan.ts).
 */
export class PolicyState {
  mode: FilterMode;
  audit: boolean;
  dns: DnsPolicy;
  rules: RuleIndex;
  readonly learned: LearnedAddresses;
  /**
   * No rule or learned address expires before this (ms; Infinity = none), so the once-a-second
   * collector skips attachments with nothing due without scanning their rules. May be early
   * (never late): notes only move it earlier; `recomputeNextExpiry` makes it exact.
   */
  nextExpiryMs = Infinity;

  constructor(policy: AttachmentPolicy, learned: LearnedAddresses = new LearnedAddresses()) {
    this.mode = policy.mode;
    this.audit = policy.audit;
    this.dns = policy.dns;
    this.rules = new RuleIndex(indexRules(policy.allowCidrs, policy.denyCidrs));
    this.learned = learned;
    this.recomputeNextExpiry();
  }

  noteDeadline(expiresAtMs: number | null): void {
    if (expiresAtMs !== null && expiresAtMs < this.nextExpiryMs) this.nextExpiryMs = expiresAtMs;
  }

  recomputeNextExpiry(): void {
    let next = Infinity;
    for (const r of this.rules.values()) {
      if (r.allow?.expiresAtMs != null && r.allow.expiresAtMs < next) next = r.allow.expiresAtMs;
      if (r.deny?.expiresAtMs != null && r.deny.expiresAtMs < next) next = r.deny.expiresAtMs;
    }
    for (const l of this.learned.all()) if (l.expiresAtMs < next) next = l.expiresAtMs;
    this.nextExpiryMs = next;
  }

  toPolicy(): AttachmentPolicy {
    const allowCidrs: CidrRule[] = [];
    const denyCidrs: CidrRule[] = [];
    for (const r of this.rules.values()) {
      if (r.allow !== null) allowCidrs.push(r.allow);
      if (r.deny !== null) denyCidrs.push(r.deny);
    }
    return { mode: this.mode, audit: this.audit, allowCidrs, denyCidrs, dns: this.dns };
  }

  /** Persisted form, built from the index keys (no re-formatting of every prefix). */
  toStored(): { policy: StoredPolicy; learned: PackedLearned } {
    const allowCidrs: StoredCidrRule[] = [];
    const denyCidrs: StoredCidrRule[] = [];
    for (const [key, r] of this.rules) {
      if (r.allow !== null) allowCidrs.push({ cidr: key, expiresAtMs: r.allow.expiresAtMs });
      if (r.deny !== null) denyCidrs.push({ cidr: key, expiresAtMs: r.deny.expiresAtMs });
    }
    return { policy: { mode: this.mode, audit: this.audit, allowCidrs, denyCidrs, dns: this.dns }, learned: packLearned(this.learned) };
  }

  /** The whole kernel policy, leaving out the learned records `drop` says go. */
  compile(nowMs: number, drop: ((l: LearnedRecord) => boolean) | null = null, rules: RuleIndex = this.rules): FilterPolicy {
    const policy = rulesAsPolicy(rules.values());
    const learned = drop === null ? this.learned.all() : [...this.learned.all()].filter((l) => !drop(l));
    return { mode: this.mode, audit: this.audit, entries: compileEntries(policy, learned, nowMs) };
  }

  /** What one prefix's kernel entry should be (null = none), given optional replacement rules/learned. */
  entryFor(
    key: string,
    cidr: Cidr,
    nowMs: number,
    opts: { rules?: PrefixRules | null; learned?: readonly LearnedAddress[] } = {},
  ): FilterEntry | null {
    const rules = opts.rules === undefined ? (this.rules.get(key) ?? null) : opts.rules;
    const policy = rulesAsPolicy(rules === null ? [] : [rules]);
    return compilePrefix(policy, opts.learned ?? this.learned.forPrefix(key), cidr, nowMs);
  }
}

export function indexRules(allow: readonly CidrRule[], deny: readonly CidrRule[]): Map<string, PrefixRules> {
  const out = new Map<string, PrefixRules>();
  const put = (r: CidrRule, kind: "allow" | "deny"): void => {
    const key = formatCidr(r.cidr);
    const cur = out.get(key) ?? { cidr: r.cidr, allow: null, deny: null };
    const prev = cur[kind];
    // Duplicates of one prefix in one list: keep the longest-lived (null = permanent).
    const keep = prev === null || prev.expiresAtMs === null ? (prev ?? r) : r.expiresAtMs === null || r.expiresAtMs > prev.expiresAtMs ? r : prev;
    out.set(key, { ...cur, [kind]: keep });
  };
  for (const r of allow) put(r, "allow");
  for (const r of deny) put(r, "deny");
  return out;
}

function rulesAsPolicy(rules: Iterable<PrefixRules>): { allowCidrs: CidrRule[]; denyCidrs: CidrRule[] } {
  const allowCidrs: CidrRule[] = [];
  const denyCidrs: CidrRule[] = [];
  for (const r of rules) {
    if (r.allow !== null) allowCidrs.push(r.allow);
    if (r.deny !== null) denyCidrs.push(r.deny);
  }
  return { allowCidrs, denyCidrs };
}
