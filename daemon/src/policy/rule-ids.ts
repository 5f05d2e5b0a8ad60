import type { DnsPolicy } from "./policy.js";

/**
 * Stable small ids for one attachment's rules: the id the kernel entries carry (nf_entry.rule_id)
 * and the index of the rule's hit counter (nf_hits). A rule is named by its key:
 *   "allow-cidr 10.0.0.0/8", "deny-cidr 10.0.0.0/8"  a control-plane (or default-policy) CIDR rule;
 *   "allow-domain example.com"                     the allow rule for that domain (exact or with its
 *                                                  subdomains: one rule per domain, as the commands
 *                                                  keep it), which DNS-learned addresses count against;
 *   "dns-proxy", "dns-denylist", "dns-disabled"     learned addresses no allow rule names (the control
 *                                                  plane answered, or the DNS mode let the name through).
 * The same key keeps its id for as long as it stays in the policy (a BulkUpdate restating a rule keeps
 * its counts); a new key gets a new id. Ids are recycled only after a full replace has retired them:
 * a key gone from the policy at a sweep (a full compile) is quarantined (the generation being retired
 * may still carry it), freed at the next sweep as "dirty", and handed out again only after the caller
 * has zeroed its kernel counter (`takeDirty`). Rules beyond the kernel's capacity share the overflow id.
 */

/** A name's rule key is fixed while the name holds learned addresses (its kernel entries carry that id). */
export interface RuleIdsLimits {
  /** First id for policy rules (below: the kernel's reserved ids). */
  readonly first: number;
  /** The overflow id (the last counter); no rule gets an id at or above it. */
  readonly overflow: number;
}

/** The kernel's: NF_RULE_FIRST and NF_HITS_OVERFLOW in bpf/include/netfence.h (checked by a test against datapath/hits-wire.ts). */
export const KERNEL_RULE_ID_LIMITS: RuleIdsLimits = { first: 16, overflow: 8191 };

export function cidrRuleKey(kind: "allow" | "deny", prefixKey: string): string {
  return `${kind}-cidr ${prefixKey}`;
}

export function domainRuleKey(domain: string): string {
  return `allow-domain ${domain}`;
}

/** The key of a learned name's rule: the most specific allow rule matching it, else the DNS mode's. */
export function learnedRuleKey(dns: DnsPolicy, name: string): string {
  const allow = allowIndex(dns);
  let q = name.toLowerCase();
  if (q.endsWith(".")) q = q.slice(0, -1);
  if (allow.has(q)) return domainRuleKey(q);
  for (let dot = q.indexOf("."); dot !== -1; dot = q.indexOf(".", dot + 1)) {
    const suffix = q.slice(dot + 1);
    if (allow.get(suffix) === true) return domainRuleKey(suffix);
  }
  return `dns-${dns.mode}`;
}

/** Allow-domain rules of a DNS policy: domain → includes subdomains. Cached per (immutable) policy. */
const allowIndexCache = new WeakMap<DnsPolicy, Map<string, boolean>>();
function allowIndex(dns: DnsPolicy): Map<string, boolean> {
  let m = allowIndexCache.get(dns);
  if (m === undefined) {
    m = new Map();
    for (const r of dns.allowDomains) m.set(r.domain, (m.get(r.domain) ?? false) || r.includeSubdomains);
    allowIndexCache.set(dns, m);
  }
  return m;
}

export class RuleIds {
  private readonly byKey = new Map<string, number>();
  private readonly byId = new Map<number, string>();
  /** Learned name → the key its entries were stamped with (stable while the name is learned). */
  private readonly nameKeys = new Map<string, string>();
  private next: number;
  /** Zeroed in the kernel: handed out first. */
  private free: number[] = [];
  /** Gone at the last sweep: the generation being retired may still carry them. */
  private quarantine: number[] = [];
  /** Retired: to be zeroed in the kernel (takeDirty) before reuse. */
  private dirty: number[] = [];

  constructor(private readonly limits: RuleIdsLimits) {
    this.next = limits.first;
  }

  /** The id of a rule key, allocating one for a new key. */
  idFor(key: string): number {
    const id = this.byKey.get(key);
    if (id !== undefined) return id;
    const fresh = this.free.pop() ?? (this.next < this.limits.overflow ? this.next++ : this.limits.overflow);
    this.byKey.set(key, fresh);
    if (fresh !== this.limits.overflow) this.byId.set(fresh, key);
    return fresh;
  }

  /** The id a DNS-learned name's entries carry: its rule's, fixed while the name stays learned. */
  idForLearned(dns: DnsPolicy, name: string): number {
    let key = this.nameKeys.get(name);
    if (key === undefined) {
      key = learnedRuleKey(dns, name);
      this.nameKeys.set(name, key);
    }
    return this.idFor(key);
  }

  /** The key holding an id (undefined: free, or the shared overflow id). */
  keyOf(id: number): string | undefined {
    return this.byId.get(id);
  }

  /** The key a learned name counts against, if it was stamped. */
  learnedKeyOf(name: string): string | undefined {
    return this.nameKeys.get(name);
  }

  /** Every assigned (key, id), rules beyond the capacity with the overflow id. */
  entries(): IterableIterator<[string, number]> {
    return this.byKey.entries();
  }

  /** One past the highest id ever handed out (what a hit-counter read must cover). */
  get highWater(): number {
    return this.next;
  }

  get overflowId(): number {
    return this.limits.overflow;
  }

  /**
   * After a full compile: every key neither in `liveKeys` nor held by a still-learned name is
   * quarantined; what was quarantined at the previous sweep becomes dirty.
   */
  sweep(liveKeys: ReadonlySet<string>, learnedNames: ReadonlySet<string>): void {
    this.dirty.push(...this.quarantine);
    this.quarantine = [];
    const held = new Set<string>();
    for (const [name, key] of this.nameKeys) {
      if (learnedNames.has(name)) held.add(key);
      else this.nameKeys.delete(name);
    }
    for (const [key, id] of this.byKey) {
      if (liveKeys.has(key) || held.has(key)) continue;
      this.byKey.delete(key);
      if (id === this.limits.overflow) continue;
      this.byId.delete(id);
      this.quarantine.push(id);
    }
  }

  /** Ids freed by sweeps whose kernel counters must be zeroed now; they are reusable afterwards. */
  takeDirty(): number[] {
    const out = this.dirty;
    this.dirty = [];
    this.free.push(...out);
    return out;
  }

  /**
   * After a restart: the ids the kernel entries carry, claimed by the keys that decide them now
   * (`claims`), so counts stay with their rules; every other id that has counts (`countedIds`) is
   * dirty (zeroed before reuse). Call on an empty instance.
   */
  restore(claims: Iterable<[string, number]>, countedIds: Iterable<number>, learnedClaims: Iterable<[string, string]> = []): void {
    for (const [key, id] of claims) {
      if (id < this.limits.first || id >= this.limits.overflow || this.byKey.has(key) || this.byId.has(id)) continue;
      this.byKey.set(key, id);
      this.byId.set(id, key);
      if (id >= this.next) this.next = id + 1;
    }
    for (const [name, key] of learnedClaims) if (this.byKey.has(key)) this.nameKeys.set(name, key);
    const counted = new Set<number>();
    for (const id of countedIds) {
      if (id < this.limits.first || id >= this.limits.overflow) continue;
      counted.add(id);
      if (id >= this.next) this.next = id + 1;
    }
    for (let id = this.limits.first; id < this.next; id++) {
      if (this.byId.has(id)) continue;
      if (counted.has(id)) this.dirty.push(id);
      else this.free.push(id);
    }
  }
}
