import { formatAddr, formatCidr, type Cidr } from "@netfence/proto/parse";
import type { CidrRule } from "./policy.js";
import { addListRule, anyDenyLive, anyLive, isLive, longestLived, type PrefixRules } from "./scoped-rules.js";

/**
 * One attachment's control-plane CIDR rules indexed by prefix (canonical text), with what a
 * longest-prefix lookup needs: the prefix lengths in use per family. The Map-like API (get, has,
 * set, delete, iteration) keeps the plans that edit rules simple; `longest` answers "which rule
 * would the kernel's LPM pick for this address" without scanning every rule (the DNS rebinding
 * guard asks it for each learned address).
 */
export type { PrefixRules, ScopedRules } from "./scoped-rules.js";

/** A change not yet applied, seen by `longest` as if it were (for planning before a commit). */
export interface RuleOverride {
  readonly key: string;
  readonly rules: PrefixRules | null;
}

const live = isLive;

/** The network of `addr` at `len` bits, as canonical prefix text. */
export function maskedKey(family: 4 | 6, addr: Uint8Array, len: number): string {
  const out = new Uint8Array(addr.length);
  const whole = len >> 3;
  out.set(addr.subarray(0, whole));
  if (whole < out.length && (len & 7) !== 0) out[whole] = addr[whole]! & (0xff << (8 - (len & 7)));
  return `${formatAddr(family, out)}/${len}`;
}

export class RuleIndex implements Iterable<[string, PrefixRules]> {
  private readonly map: Map<string, PrefixRules>;
  /** Rules per prefix length: [0..32] IPv4, [33..161] IPv6 (offset 33). */
  private readonly perLength = new Uint32Array(33 + 129);

  constructor(rules: Map<string, PrefixRules> = new Map()) {
    this.map = rules;
    for (const r of rules.values()) this.perLength[slot(r.cidr)]!++;
  }

  get size(): number {
    return this.map.size;
  }

  get(key: string): PrefixRules | undefined {
    return this.map.get(key);
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  set(key: string, rules: PrefixRules): this {
    const prev = this.map.get(key);
    if (prev !== undefined) this.perLength[slot(prev.cidr)]!--;
    this.map.set(key, rules);
    this.perLength[slot(rules.cidr)]!++;
    return this;
  }

  delete(key: string): boolean {
    const prev = this.map.get(key);
    if (prev === undefined) return false;
    this.perLength[slot(prev.cidr)]!--;
    return this.map.delete(key);
  }

  values(): IterableIterator<PrefixRules> {
    return this.map.values();
  }

  keys(): IterableIterator<string> {
    return this.map.keys();
  }

  [Symbol.iterator](): IterableIterator<[string, PrefixRules]> {
    return this.map.entries();
  }

  /** A copy with `override` applied. */
  withOverride(override: RuleOverride): RuleIndex {
    const copy = new RuleIndex(new Map(this.map));
    if (override.rules === null) copy.delete(override.key);
    else copy.set(override.key, override.rules);
    return copy;
  }

  /**
   * The most specific prefix covering `cidr` (itself included) that has a live rule at `nowMs`,
   * scoped or not — what the kernel's longest-prefix match would find among the control-plane
   * rules — or null.
   */
  longest(cidr: Cidr, nowMs: number, override?: RuleOverride): PrefixRules | null {
    for (const r of this.covering(cidr, nowMs, override)) return r;
    return null;
  }

  /**
   * What the rebinding guard sees (plan/learned-guard.ts): walking the prefixes covering `cidr`
   * from the most specific, "deny" when one with a live deny rule — unscoped, or scoped (it decides
   * some packets, which an unscoped learned /32 would otherwise let through) — comes before one with
   * a live unscoped allow; "allow" when the unscoped allow comes first (it decides every packet
   * there); null when neither covers it. A prefix with only scoped allow rules is walked past: the
   * packets outside their scopes fall through to the shorter prefixes.
   */
  guardVerdict(cidr: Cidr, nowMs: number, override?: RuleOverride): "deny" | "allow" | null {
    for (const r of this.covering(cidr, nowMs, override)) {
      if (anyDenyLive(r, nowMs)) return "deny";
      if (live(r.allow, nowMs)) return "allow";
    }
    return null;
  }

  /** The prefixes covering `cidr` with a live rule, most specific first. */
  private *covering(cidr: Cidr, nowMs: number, override?: RuleOverride): IterableIterator<PrefixRules> {
    const base = cidr.family === 4 ? 0 : 33;
    const overrideLen = override === undefined ? -1 : lengthOfKey(override.key);
    for (let len = cidr.prefixLen; len >= 0; len--) {
      if (this.perLength[base + len] === 0 && len !== overrideLen) continue;
      const key = maskedKey(cidr.family, cidr.addr, len);
      const r = override !== undefined && override.key === key ? override.rules : (this.map.get(key) ?? null);
      if (r !== null && anyLive(r, nowMs)) yield r;
    }
  }
}

function slot(cidr: Cidr): number {
  return (cidr.family === 4 ? 0 : 33) + cidr.prefixLen;
}

function lengthOfKey(key: string): number {
  return Number(key.slice(key.lastIndexOf("/") + 1));
}

/**
 * Rule lists (as a command or policy carries them) → rules keyed by canonical prefix: each rule's
 * key is computed once, here. Duplicates of one (prefix, scope) in one list keep the longest-lived
 * (null = permanent); rules of one prefix with other scopes are rules of their own (scoped-rules.ts).
 */
export function indexRules(allow: readonly CidrRule[], deny: readonly CidrRule[]): Map<string, PrefixRules> {
  const out = new Map<string, PrefixRules>();
  // Objects of one shape built by a literal (not a computed-key spread, which makes dictionary
  // objects: ~2x slower for the 10k-entry BulkUpdate and every later walk over them).
  for (const r of allow) {
    const key = formatCidr(r.cidr);
    const cur = out.get(key);
    if (r.scope !== undefined || cur?.scoped !== undefined) out.set(key, addListRule(cur, "allow", r));
    else out.set(key, cur === undefined ? { cidr: r.cidr, allow: r, deny: null } : { cidr: cur.cidr, allow: longestLived(cur.allow, r), deny: cur.deny });
  }
  for (const r of deny) {
    const key = formatCidr(r.cidr);
    const cur = out.get(key);
    if (r.scope !== undefined || cur?.scoped !== undefined) out.set(key, addListRule(cur, "deny", r));
    else out.set(key, cur === undefined ? { cidr: r.cidr, allow: null, deny: r } : { cidr: cur.cidr, allow: cur.allow, deny: longestLived(cur.deny, r) });
  }
  return out;
}
