import { formatCidr, type Cidr } from "@netfence/proto/parse";
import type { LearnedAddress } from "./compile.js";

/**
 * Addresses learned from DNS answers, remembered per name so they can be kept exactly while the
 * name that produced them is still allowed. Indexed both ways: name → addresses (pruning by
 * name) and address → names (recomputing one prefix without scanning everything). Most addresses
 * belong to one name, so the address index holds the record itself and only grows a Map for an
 * address several names share (100k learned addresses are 100k records, not 100k Maps).
 */
export interface LearnedRecord extends LearnedAddress {
  readonly name: string;
  readonly cidr: Cidr;
  readonly expiresAtMs: number;
  /** When the last answer that produced it was received (explain); absent: restored from the store. */
  readonly learnedAtMs?: number;
  /** That answer's TTL in seconds (before any clamp; explain). */
  readonly ttlSeconds?: number;
}

/** What explain shows about the answer behind a learned record (not persisted). */
export interface LearnedAnswer {
  readonly learnedAtMs: number;
  readonly ttlSeconds: number;
}

type ByAddr = LearnedRecord | Map<string, LearnedRecord>;

function* recordsOf(entry: ByAddr | undefined): IterableIterator<LearnedRecord> {
  if (entry === undefined) return;
  if (entry instanceof Map) yield* entry.values();
  else yield entry;
}

/** The address text of a learned prefix key (canonical, "192.0.2.1/32" → "192.0.2.1"). */
export function hostText(key: string): string {
  return key.slice(0, key.lastIndexOf("/"));
}

/** Source of removal epochs: unique across every LearnedAddresses of the process. */
let lastEpoch = 0;

export class LearnedAddresses {
  private readonly byName = new Map<string, Map<string, LearnedRecord>>();
  private readonly byAddr = new Map<string, ByAddr>();
  private epochValue = ++lastEpoch;

  /**
   * Changes whenever a learned record is removed before its deadline — a deny, a re-check of the
   * rebinding guard, a policy that no longer allows the name — (and differs between two
   * instances): what the DNS server remembers (the LearnedInserter's recent writes, the answer
   * cache) is stale once it moved. A record removed because its deadline passed does not move it:
   * nothing the DNS server keeps relies on an address beyond that deadline (learned-sink.ts
   * `heldUntilMs`).
   */
  get epoch(): number {
    return this.epochValue;
  }

  /** Distinct learned addresses (what the learned-address quota counts). */
  get size(): number {
    return this.byAddr.size;
  }

  /** Records (or extends) name → address; the deadline never moves backwards. */
  add(name: string, cidr: Cidr, expiresAtMs: number, key: string = formatCidr(cidr), answer?: LearnedAnswer): void {
    let n = this.byName.get(name);
    if (n === undefined) this.byName.set(name, (n = new Map()));
    const prev = n.get(key);
    const deadline = prev === undefined || expiresAtMs > prev.expiresAtMs ? expiresAtMs : prev.expiresAtMs;
    const last = answer ?? (prev?.learnedAtMs !== undefined ? { learnedAtMs: prev.learnedAtMs, ttlSeconds: prev.ttlSeconds ?? 0 } : undefined);
    const rec: LearnedRecord = last === undefined ? { name, cidr, expiresAtMs: deadline } : { name, cidr, expiresAtMs: deadline, learnedAtMs: last.learnedAtMs, ttlSeconds: last.ttlSeconds };
    n.set(key, rec);
    const a = this.byAddr.get(key);
    if (a === undefined || (!(a instanceof Map) && a.name === name)) this.byAddr.set(key, rec);
    else if (a instanceof Map) a.set(name, rec);
    else this.byAddr.set(key, new Map([[a.name, a], [name, rec]]));
  }

  /** Entries for one prefix key (canonical text), across all names. */
  forPrefix(key: string): LearnedRecord[] {
    return [...recordsOf(this.byAddr.get(key))];
  }

  /** Prefix keys a name currently holds. */
  prefixesOf(name: string): string[] {
    return [...(this.byName.get(name)?.keys() ?? [])];
  }

  /** Every learned prefix once: canonical key and the prefix. */
  *prefixes(): IterableIterator<[string, Cidr]> {
    for (const [key, entry] of this.byAddr) {
      const first = recordsOf(entry).next();
      if (!first.done) yield [key, first.value.cidr];
    }
  }

  /** Names holding one prefix key. */
  namesOf(key: string): string[] {
    return [...recordsOf(this.byAddr.get(key))].map((r) => r.name);
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
    for (const key of n.keys()) this.dropAddr(key, name);
    this.byName.delete(name);
  }

  /** Records whose deadline has passed. */
  expired(nowMs: number): LearnedRecord[] {
    const out: LearnedRecord[] = [];
    for (const n of this.byName.values()) for (const r of n.values()) if (r.expiresAtMs <= nowMs) out.push(r);
    return out;
  }

  /** `expired`: removed because its deadline passed (the epoch does not move). */
  remove(name: string, key: string, expired = false): void {
    const n = this.byName.get(name);
    if (n === undefined || !n.delete(key)) return;
    if (n.size === 0) this.byName.delete(name);
    this.dropAddr(key, name, expired);
  }

  /** (name, canonical prefix, deadline) triples, for persistence without re-formatting. */
  *keyed(): IterableIterator<{ name: string; key: string; expiresAtMs: number }> {
    for (const [name, n] of this.byName) for (const [key, r] of n) yield { name, key, expiresAtMs: r.expiresAtMs };
  }

  *all(): IterableIterator<LearnedRecord> {
    for (const n of this.byName.values()) yield* n.values();
  }

  /** Calls `fn` for every record, name by name (no generator: the store's hot loop). */
  forEachByName(fn: (name: string, records: ReadonlyMap<string, LearnedRecord>) => void): void {
    for (const [name, n] of this.byName) fn(name, n);
  }

  private dropAddr(key: string, name: string, expired = false): void {
    if (!expired) this.epochValue = ++lastEpoch;
    const a = this.byAddr.get(key);
    if (a === undefined) return;
    if (!(a instanceof Map)) {
      if (a.name === name) this.byAddr.delete(key);
      return;
    }
    a.delete(name);
    if (a.size === 1) this.byAddr.set(key, a.values().next().value!);
    else if (a.size === 0) this.byAddr.delete(key);
  }
}
