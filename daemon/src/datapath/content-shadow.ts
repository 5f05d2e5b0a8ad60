import { formatCidr, type Cidr } from "@netfence/proto/parse";
import type { FilterEntry, FilterMode, FilterPolicy } from "./filter.js";
import { SUM_BASIS_A, SUM_BASIS_B, SUM_RECORD } from "./tamper-wire.js";
import { ENTRY_SCOPE_KINDS, type WireEntry } from "./wire-format.js";

/**
 * What the kernel maps of each attachment should hold, as a checksum the loader's VERIFY can be
 * compared with (issue 14: map contents changed behind the daemon's back). The loader is the only
 * writer of the maps and answers requests in order, so the checksum of everything the daemon SENT
 * before a VERIFY is exactly what VERIFY must find — no race with DNS learning or expiry: the
 * shadow is updated when a write is sent, and VERIFY's expectation is taken when it is sent.
 *
 * Per entry: {family, prefixlen, flags, has-expiry, address masked to the prefix, scope id}
 * hashed with FNV-1a 32 from two bases and summed mod 2^32 (order-independent; the C side is
 * bpf/loader/tamper.c, the record netfence-protocol.h "The content checksum"). An address entry's
 * flags are its allow|deny and the kinds of owner its scope set is looked up for, and its scope id
 * is the set's (WireEntry.scopeId/scopeKinds, as wire-format.ts writes them): an entry pointed at
 * another set, or made to skip a kind, would drop its scoped denies without anything else changing. Expired entries count until the daemon's garbage collection deletes them
 * (the kernel keeps them until then too); an entry sent already expired is not written by the
 * loader and not counted here. The deadline itself is not compared (the kernel stores it on
 * another clock): only whether there is one. A write that failed leaves the shadow unknown until
 * the next full replace, and an unknown shadow is not compared.
 */
export interface ContentExpectation {
  readonly mode: FilterMode;
  readonly audit: boolean;
  readonly entries: number;
  readonly sumA: number;
  readonly sumB: number;
}

interface Shadow {
  mode: FilterMode;
  audit: boolean;
  readonly entries: Map<string, readonly [number, number]>;
  sumA: number;
  sumB: number;
  known: boolean;
}

export class ContentShadows {
  private readonly shadows = new Map<string, Shadow>();

  /** A full replace (attach, REPLACE) was sent; `scopeWire`: its scope-table entries (40-byte wire records). */
  replaced(id: string, policy: FilterPolicy, nowMs: number, scopeWire?: Uint8Array): void {
    const s: Shadow = { mode: policy.mode, audit: policy.audit, entries: new Map(), sumA: 0, sumB: 0, known: true };
    this.shadows.set(id, s);
    for (const e of policy.entries) if (live(e, nowMs)) put(s, e);
    if (scopeWire) scopesPut(s, scopeWire, nowMs);
  }

  upserted(id: string, entries: readonly FilterEntry[], nowMs: number, scopeWire?: Uint8Array): void {
    const s = this.shadows.get(id);
    if (s === undefined) return;
    for (const e of entries) {
      drop(s, formatCidr(e.cidr));
      if (live(e, nowMs)) put(s, e);
    }
    if (scopeWire) scopesPut(s, scopeWire, nowMs);
  }

  /** Scope-table entries (wire records) were deleted. */
  scopesDeleted(id: string, scopeWire: Uint8Array): void {
    const s = this.shadows.get(id);
    if (s === undefined) return;
    for (let off = 0; off + WIRE_ENTRY_SIZE <= scopeWire.length; off += WIRE_ENTRY_SIZE) drop(s, scopeKeyOf(scopeWire, off));
  }

  deleted(id: string, cidrs: readonly Cidr[]): void {
    const s = this.shadows.get(id);
    if (s === undefined) return;
    for (const c of cidrs) drop(s, formatCidr(c));
  }

  modeSet(id: string, mode: FilterMode, audit: boolean): void {
    const s = this.shadows.get(id);
    if (s === undefined) return;
    s.mode = mode;
    s.audit = audit;
  }

  /** A write failed: what the kernel holds is not known until the next full replace. */
  unknown(id: string): void {
    const s = this.shadows.get(id);
    if (s !== undefined) s.known = false;
  }

  /** `unknown`, then rethrows the write's error. */
  failed(id: string, err: unknown): never {
    this.unknown(id);
    throw err;
  }

  forget(id: string): void {
    this.shadows.delete(id);
  }

  /** What VERIFY must find now; null when not known (never written by this process, or a write failed). */
  expect(id: string): ContentExpectation | null {
    const s = this.shadows.get(id);
    if (s === undefined || !s.known) return null;
    return { mode: s.mode, audit: s.audit, entries: s.entries.size, sumA: s.sumA, sumB: s.sumB };
  }
}

function live(e: FilterEntry, nowMs: number): boolean {
  return e.expiresAtMs === null || e.expiresAtMs > nowMs;
}

function put(s: Shadow, e: FilterEntry): void {
  const [a, b] = entryHash(e);
  s.entries.set(formatCidr(e.cidr), [a, b]);
  s.sumA = (s.sumA + a) >>> 0;
  s.sumB = (s.sumB + b) >>> 0;
}

function drop(s: Shadow, key: string): void {
  const old = s.entries.get(key);
  if (old === undefined) return;
  s.entries.delete(key);
  s.sumA = (s.sumA - old[0]) >>> 0;
  s.sumB = (s.sumB - old[1]) >>> 0;
}

const WIRE_ENTRY_SIZE = 40; // nf_wire_entry (layout 6)
const WIRE_FAMILY_SCOPE = 2;

/**
 * A scope entry's shadow key: its key bits (prefix length and the key bytes after the generation),
 * one char per byte after a NUL (no address key, formatCidr's text, starts with one).
 */
function scopeKeyOf(w: Uint8Array, off: number): string {
  const b = off + 16;
  return String.fromCharCode(0, w[off + 1]!, w[b]!, w[b + 1]!, w[b + 2]!, w[b + 3]!, w[b + 4]!, w[b + 5]!, w[b + 6]!, w[b + 7]!, w[b + 8]!, w[b + 9]!);
}

/** Scope-table entries: each wire record hashed like the loader hashes the stored key (tamper.c). */
function scopesPut(s: Shadow, w: Uint8Array, nowMs: number): void {
  const view = new DataView(w.buffer, w.byteOffset, w.byteLength);
  for (let off = 0; off + WIRE_ENTRY_SIZE <= w.length; off += WIRE_ENTRY_SIZE) {
    if (w[off] !== WIRE_FAMILY_SCOPE) continue;
    const key = scopeKeyOf(w, off);
    drop(s, key);
    const ms = view.getUint32(off + 8, true) + view.getUint32(off + 12, true) * 0x100000000;
    if (ms !== 0 && ms <= nowMs) continue; // not written by the loader
    const plen = w[off + 1]!;
    rec.fill(0);
    rec[0] = WIRE_FAMILY_SCOPE;
    rec[1] = plen;
    rec[2] = w[off + 2]! & 3;
    rec[3] = ms !== 0 ? 1 : 0;
    for (let i = 0; i < 10; i++) {
      const keep = plen - i * 8;
      rec[4 + i] = w[off + 16 + i]! & (keep >= 8 ? 0xff : keep <= 0 ? 0 : (0xff << (8 - keep)) & 0xff);
    }
    const a = fnv1a(SUM_BASIS_A), b = fnv1a(SUM_BASIS_B);
    s.entries.set(key, [a, b]);
    s.sumA = (s.sumA + a) >>> 0;
    s.sumB = (s.sumB + b) >>> 0;
  }
}

const rec = new Uint8Array(SUM_RECORD);

/**
 * The two FNV-1a 32 hashes of an entry's record (bpf/loader/tamper.c add_entry). A WireEntry's
 * scope id and kinds count as the loader stores them: kinds only with a scope id (wire-format.ts).
 */
export function entryHash(e: FilterEntry | WireEntry): [number, number] {
  const v6 = e.cidr.family === 6;
  const plen = e.cidr.prefixLen;
  const scope = ("scopeId" in e ? e.scopeId : undefined) ?? 0;
  const kinds = scope === 0 ? 0 : (("scopeKinds" in e ? e.scopeKinds : undefined) ?? 0) & ENTRY_SCOPE_KINDS;
  rec.fill(0);
  rec[0] = v6 ? 6 : 4;
  rec[1] = plen;
  rec[2] = (e.allow ? 1 : 0) | (e.deny ? 2 : 0) | kinds;
  rec[3] = e.expiresAtMs !== null ? 1 : 0;
  rec[20] = scope & 0xff; // u16 little endian, as nf_wire_entry.scope
  rec[21] = (scope >>> 8) & 0xff;
  const bytes = e.cidr.addr;
  for (let i = 0; i < bytes.length && i < 16; i++) {
    const keep = plen - i * 8;
    rec[4 + i] = bytes[i]! & (keep >= 8 ? 0xff : keep <= 0 ? 0 : (0xff << (8 - keep)) & 0xff);
  }
  return [fnv1a(SUM_BASIS_A), fnv1a(SUM_BASIS_B)];
}

function fnv1a(basis: number): number {
  let h = basis >>> 0;
  for (let i = 0; i < rec.length; i++) {
    h ^= rec[i]!;
    h = Math.imul(h, 16777619) >>> 0;
  }
  return h;
}
