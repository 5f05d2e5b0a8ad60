import type { Cidr } from "@netfence/proto/parse";
import { compileIndexed, entryOf, type LearnedAddress } from "./compile.js";
import type { FilterEntry, FilterMode, FilterPolicy } from "./compiled.js";
import type { AttachmentPolicy, CidrRule, DnsPolicy, EstablishedMode } from "./policy.js";
import { learnedScopes } from "./learned-scope.js";
import { earliestDeadline, rulesOf } from "./scoped-rules.js";
import { LearnedAddresses, type LearnedRecord } from "./learned-addresses.js";
import { RuleIndex, indexRules, type PrefixRules } from "./rule-index.js";
import { RuleOrigins } from "./rule-origins.js";
import { KERNEL_RULE_ID_LIMITS, RuleIds, domainRuleKey } from "./rule-ids.js";
import type { RuleStamper } from "./compile.js";

export type { PrefixRules } from "./rule-index.js";
export { indexRules } from "./rule-index.js";

/**
 * One attachment's live policy as the manager keeps it: CIDR rules indexed by prefix (so a
 * single-prefix command costs O(1), also in a burst of 10k commands), DNS rules, and the
 * addresses learned from DNS answers. Mutated only by a committed plan (see command-plan.ts).
 */
export class PolicyState {
  mode: FilterMode;
  audit: boolean;
  /** Keep or sever connections set up before a change (issue 15); "sever" = the default. */
  established: EstablishedMode;
  dns: DnsPolicy;
  rules: RuleIndex;
  readonly learned: LearnedAddresses;
  /** Where each rule came from (explain); persisted with the attachment. */
  readonly origins: RuleOrigins;
  /**
   * No rule or learned address expires before this (ms; Infinity = none), so the once-a-second
   * collector skips attachments with nothing due without scanning their rules. May be early
   * (never late): notes only move it earlier; `recomputeNextExpiry` makes it exact.
   */
  nextExpiryMs = Infinity;
  /** Ids of this attachment's rules: what the kernel entries carry and its hit counters are indexed by. */
  readonly ruleIds = new RuleIds(KERNEL_RULE_ID_LIMITS);
  private readonly stamper: RuleStamper = {
    cidr: (kind, key) => this.ruleIds.idForCidr(kind, key),
    learned: (name) => this.ruleIds.idForLearned(this.dns, name),
    learnedScopes: (name) => learnedScopes(this.dns, name),
  };

  constructor(policy: AttachmentPolicy, learned: LearnedAddresses = new LearnedAddresses(), origins: RuleOrigins = new RuleOrigins()) {
    this.origins = origins;
    this.mode = policy.mode;
    this.audit = policy.audit;
    this.established = policy.established ?? "sever";
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
      if (r.scoped !== undefined) next = Math.min(next, earliestDeadline(r));
    }
    for (const l of this.learned.all()) if (l.expiresAtMs < next) next = l.expiresAtMs;
    this.nextExpiryMs = next;
  }

  toPolicy(): AttachmentPolicy {
    const allowCidrs: CidrRule[] = [];
    const denyCidrs: CidrRule[] = [];
    for (const r of this.rules.values()) {
      for (const [kind, rule] of rulesOf(r)) (kind === "allow" ? allowCidrs : denyCidrs).push(rule);
    }
    return { mode: this.mode, audit: this.audit, allowCidrs, denyCidrs, dns: this.dns, ...this.establishedField() };
  }

  /** `established` as the policy and store carry it: absent = sever (files and acks from before issue 15). */
  establishedField(): { established?: EstablishedMode } {
    return this.established === "keep" ? { established: "keep" } : {};
  }

  /**
   * The whole kernel policy, leaving out the learned records `drop` says go, with `rules` and `dns`
   * (default: the current ones) as the policy about to be installed. A full compile is the rule ids'
   * sweep point: ids of rules no longer in it start their retirement (rule-ids.ts).
   */
  compile(nowMs: number, drop: ((l: LearnedRecord) => boolean) | null = null, rules: RuleIndex = this.rules, dns: DnsPolicy = this.dns): FilterPolicy {
    const stamped = new Set<string>();
    const stamper: RuleStamper = {
      cidr: this.stamper.cidr,
      learned: (name) => {
        stamped.add(name);
        return this.ruleIds.idForLearned(dns, name);
      },
      learnedScopes: (name) => learnedScopes(dns, name),
    };
    const entries = compileIndexed(rules, this.learned, nowMs, drop, stamper);
    const other = liveOtherKeys(dns);
    this.ruleIds.sweep((kind, key) => cidrRuleLive(rules, kind, key), (key) => other.has(key), stamped);
    return { mode: this.mode, audit: this.audit, entries, ...this.keepField() };
  }

  /** FilterPolicy.keepEstablished as the driver takes it (absent = sever). */
  keepField(): { keepEstablished?: boolean } {
    return this.established === "keep" ? { keepEstablished: true } : {};
  }

  /** What one prefix's kernel entry should be (null = none), given optional replacement rules/learned. */
  entryFor(
    key: string,
    cidr: Cidr,
    nowMs: number,
    opts: { rules?: PrefixRules | null; learned?: readonly LearnedAddress[] } = {},
  ): FilterEntry | null {
    const rules = opts.rules === undefined ? (this.rules.get(key) ?? null) : opts.rules;
    return entryOf(cidr, rules, opts.learned ?? this.learned.forPrefix(key), nowMs, this.stamper, key);
  }
}

/** Whether a CIDR rule id key ("10.0.0.0/8", or "10.0.0.0/8 <scope text>" for a scoped rule) is still a rule of `rules`. */
function cidrRuleLive(rules: RuleIndex, kind: "allow" | "deny", key: string): boolean {
  const space = key.indexOf(" ");
  const r = rules.get(space === -1 ? key : key.slice(0, space));
  if (r === undefined) return false;
  if (space === -1) return (kind === "allow" ? r.allow : r.deny) !== null;
  const s = r.scoped?.find((x) => x.key === key.slice(space + 1));
  return s !== undefined && (kind === "allow" ? s.allow : s.deny) !== null;
}

/** The domain and DNS-mode rule keys a DNS policy holds (rule-ids.ts). */
export function liveOtherKeys(dns: DnsPolicy): Set<string> {
  const live = new Set<string>([`dns-${dns.mode}`]);
  for (const d of dns.allowDomains) live.add(domainRuleKey(d.domain));
  return live;
}
