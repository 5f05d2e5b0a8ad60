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

type CidrKind = "allow" | "deny";

export class RuleIds {
  /** CIDR rules by canonical prefix, one map per kind (no key strings built on the compile path). */
  private readonly cidr: Record<CidrKind, Map<string, number>> = { allow: new Map(), deny: new Map() };
  /** Domain and DNS-mode rules by their full key. */
  private readonly other = new Map<string, number>();
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

  /** The id of a CIDR rule (the compile path), allocating one for a new rule. */
  idForCidr(kind: CidrKind, prefixKey: string): number {
    const m = this.cidr[kind];
    const id = m.get(prefixKey);
    return id !== undefined ? id : this.assign(m, prefixKey, `${kind}-cidr ${prefixKey}`);
  }

  /** The id of a rule key (rule-ids.ts keys), allocating one for a new key. */
  idFor(key: string): number {
    const [m, name] = this.mapOf(key);
    const id = m.get(name);
    return id !== undefined ? id : this.assign(m, name, key);
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

  /** Every assigned (key, id), rules beyond the capacity with the overflow id. */
  *entries(): IterableIterator<[string, number]> {
    for (const kind of ["allow", "deny"] as const) for (const [prefix, id] of this.cidr[kind]) yield [`${kind}-cidr ${prefix}`, id];
    yield* this.other;
  }

  /** One past the highest id ever handed out (what a hit-counter read must cover). */
  get highWater(): number {
    return this.next;
  }

  get overflowId(): number {
    return this.limits.overflow;
  }

  /**
   * After a full compile: every rule that is not live (CIDR rules by `cidrLive`, others by
   * `otherLive`) and not held by a still-learned name is quarantined; what was quarantined at the
   * previous sweep becomes dirty.
   */
  sweep(cidrLive: (kind: CidrKind, prefixKey: string) => boolean, otherLive: (key: string) => boolean, learnedNames: ReadonlySet<string>): void {
    this.dirty.push(...this.quarantine);
    this.quarantine = [];
    const held = new Set<string>();
    for (const [name, key] of this.nameKeys) {
      if (learnedNames.has(name)) held.add(key);
      else this.nameKeys.delete(name);
    }
    for (const kind of ["allow", "deny"] as const) {
      for (const [prefix, id] of this.cidr[kind]) if (!cidrLive(kind, prefix)) this.release(this.cidr[kind], prefix, id);
    }
    for (const [key, id] of this.other) if (!otherLive(key) && !held.has(key)) this.release(this.other, key, id);
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
      const [m, name] = this.mapOf(key);
      if (id < this.limits.first || id >= this.limits.overflow || m.has(name) || this.byId.has(id)) continue;
      m.set(name, id);
      this.byId.set(id, key);
      if (id >= this.next) this.next = id + 1;
    }
    for (const [name, key] of learnedClaims) if (this.other.has(key)) this.nameKeys.set(name, key);
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

  private mapOf(key: string): [Map<string, number>, string] {
    if (key.startsWith("allow-cidr ")) return [this.cidr.allow, key.slice(11)];
    if (key.startsWith("deny-cidr ")) return [this.cidr.deny, key.slice(10)];
    return [this.other, key];
  }

  private assign(m: Map<string, number>, name: string, key: string): number {
    const fresh = this.free.pop() ?? (this.next < this.limits.overflow ? this.next++ : this.limits.overflow);
    m.set(name, fresh);
    if (fresh !== this.limits.overflow) this.byId.set(fresh, key);
    return fresh;
  }

  private release(m: Map<string, number>, name: string, id: number): void {
    m.delete(name);
    if (id === this.limits.overflow) return;
    this.byId.delete(id);
    this.quarantine.push(id);
  }
}
