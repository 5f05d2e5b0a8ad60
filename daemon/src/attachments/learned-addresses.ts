import { formatCidr, type Cidr } from "../policy/cidr.js";
import type { LearnedAddress } from "../policy/compile.js";

/**
 * Addresses learned from DNS answers, remembered per name so they can be kept exactly while the
 * name that produced them is still allowed. Indexed both ways: name → addresses (pruning by
 * name) and address → names (recomputing one prefix without scanning everything).
 */
export interface LearnedRecord extends LearnedAddress {
  readonly name: string;
  readonly cidr: Cidr;
  readonly expiresAtMs: number;
}

export class LearnedAddresses {
  private readonly byName = new Map<string, Map<string, LearnedRecord>>();
  private readonly byAddr = new Map<string, Map<string, LearnedRecord>>();

  get size(): number {
    return this.byAddr.size;
  }

  /** Records (or extends) name → address; the deadline never moves backwards. */
  add(name: string, cidr: Cidr, expiresAtMs: number): void {
    const key = formatCidr(cidr);
    const prev = this.byName.get(name)?.get(key);
    const rec: LearnedRecord = { name, cidr, expiresAtMs: Math.max(expiresAtMs, prev?.expiresAtMs ?? 0) };
    let n = this.byName.get(name);
    if (n === undefined) this.byName.set(name, (n = new Map()));
    n.set(key, rec);
    let a = this.byAddr.get(key);
    if (a === undefined) this.byAddr.set(key, (a = new Map()));
    a.set(name, rec);
  }

  /** Entries for one prefix key (canonical text), across all names. */
  forPrefix(key: string): LearnedRecord[] {
    return [...(this.byAddr.get(key)?.values() ?? [])];
  }

  /** Prefix keys a name currently holds. */
  prefixesOf(name: string): string[] {
    return [...(this.byName.get(name)?.keys() ?? [])];
  }

  /** Every learned prefix once: canonical key and the prefix. */
  *prefixes(): IterableIterator<[string, Cidr]> {
    for (const [key, byName] of this.byAddr) {
      const first = byName.values().next();
      if (!first.done) yield [key, first.value.cidr];
    }
  }

  /** Names holding one prefix key. */
  namesOf(key: string): string[] {
    return [...(this.byAddr.get(key)?.keys() ?? [])];
  }

  hasPrefix(key: string): boolean {
    return this.byAddr.has(key);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  removeName(name: string): void {
    const n = this.byName.get(name);
    if (n === undefined) return;
    for (const key of n.keys()) {
      const a = this.byAddr.get(key);
      a?.delete(name);
      if (a !== undefined && a.size === 0) this.byAddr.delete(key);
    }
    this.byName.delete(name);
  }

  /** Records whose deadline has passed. */
  expired(nowMs: number): LearnedRecord[] {
    const out: LearnedRecord[] = [];
    for (const n of this.byName.values()) for (const r of n.values()) if (r.expiresAtMs <= nowMs) out.push(r);
    return out;
  }

  remove(name: string, key: string): void {
    this.byName.get(name)?.delete(key);
    if (this.byName.get(name)?.size === 0) this.byName.delete(name);
    this.byAddr.get(key)?.delete(name);
    if (this.byAddr.get(key)?.size === 0) this.byAddr.delete(key);
  }

  /** (name, canonical prefix, deadline) triples, for persistence without re-formatting. */
  *keyed(): IterableIterator<{ name: string; key: string; expiresAtMs: number }> {
    for (const [name, n] of this.byName) for (const [key, r] of n) yield { name, key, expiresAtMs: r.expiresAtMs };
  }

  *all(): IterableIterator<LearnedRecord> {
    for (const n of this.byName.values()) yield* n.values();
  }
}
