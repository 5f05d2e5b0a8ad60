/**
 * Scope-table entries on the loader wire (issue 15, layout 6; kernel contract in bpf/include):
 * they travel in the REPLACE/UPSERT/DELETE/DUMP arrays as `struct nf_wire_entry` with
 * `family = NF_WIRE_SCOPE (2)`, `prefixlen` = the key bits AFTER the generation byte (56..80) and
 * `addr[0..10)` = the key bytes after the generation byte:
 *
 *   addr[0]     kind       NF_SCOPE_KIND_ANY 0 / UID 1 / GID 2
 *   addr[1..2]  scope id   u16 little endian (always matched whole)
 *   addr[3..6]  principal  u32 little endian (uid or gid; 0 for ANY; always matched whole)
 *   addr[7]     proto      IPPROTO_* (inside the prefix only when the block names a protocol)
 *   addr[8..9]  dport      network byte order (prefix-matched: aligned power-of-two blocks)
 *
 * flags (ALLOW/DENY), rule_id and expires_ms as for an address entry; the trailing `scope` field of
 * the wire entry is 0 for scope entries. Bytes outside the prefix are 0.
 */
import { LAYOUT, OWNER_UNKNOWN, WIRE_FAMILY_SCOPE } from "./wire-format.js";

export { OWNER_UNKNOWN };
export const SCOPE_KIND = { ANY: 0, UID: 1, GID: 2 } as const;
export type ScopeKind = (typeof SCOPE_KIND)[keyof typeof SCOPE_KIND];
/** nf_entry flags of an address entry whose prefix has scoped rules (which kinds to look up). */
export const ENTRY_SCOPE_ANY = 1 << 2;
export const ENTRY_SCOPE_UID = 1 << 3;
export const ENTRY_SCOPE_GID = 1 << 4;
/** NF_SCOPE_CAP: entries of one attachment's scope trie, both generations together. */
export const SCOPE_CAP = 65536;
/** Scope ids of one generation: 1..SCOPE_ID_MAX (0 = no scoped rule). */
export const SCOPE_ID_MAX = 65535;
/** Key bits after the generation byte: kind 8 + scope 16 + principal 32. */
export const SCOPE_WIRE_PREFIX_ANY = 56;
export const SCOPE_KEY_BYTES = 10;

/** One scope-table entry, ready to be serialised. */
export interface ScopeWireEntry {
  readonly scope: number;
  readonly kind: ScopeKind;
  /** uid or gid; 0 for ANY. */
  readonly principal: number;
  /** null = any protocol (then port/portBits are 0). */
  readonly proto: number | null;
  /** First destination port of the block, host order. */
  readonly port: number;
  /** Leading port bits inside the prefix, 0..16. */
  readonly portBits: number;
  readonly allow: boolean;
  readonly deny: boolean;
  readonly ruleId: number;
  /** ms since the epoch; null = never expires. */
  readonly expiresAtMs: number | null;
}

/** nf_wire_entry.prefixlen of a scope entry (the kernel key's prefixlen is this + 8). */
export function scopeWirePrefixLen(e: ScopeWireEntry): number {
  return e.proto === null ? SCOPE_WIRE_PREFIX_ANY : SCOPE_WIRE_PREFIX_ANY + 8 + e.portBits;
}

/** The 10 key bytes after the generation byte (nf_wire_entry.addr[0..10)), zero outside the prefix. */
export function scopeWireKey(e: ScopeWireEntry): Uint8Array {
  const k = new Uint8Array(SCOPE_KEY_BYTES);
  writeScopeKey(new DataView(k.buffer), 0, e);
  return k;
}

/** Writes the key bytes at `off` (the caller's buffer is zeroed). */
export function writeScopeKey(view: DataView, off: number, e: ScopeWireEntry): void {
  view.setUint8(off, e.kind);
  view.setUint16(off + 1, e.scope, true);
  view.setUint32(off + 3, e.principal >>> 0, true);
  if (e.proto === null) return;
  view.setUint8(off + 7, e.proto);
  if (e.portBits === 0) return;
  const mask = (0xffff << (16 - e.portBits)) & 0xffff;
  view.setUint16(off + 8, e.port & mask, false);
}

const ALLOW = 1;
const DENY = 2;

/**
 * Writes one scope entry as an nf_wire_entry at `off` of a zeroed buffer (the trailing `scope`
 * field stays 0: the id is in the key).
 */
export function writeScopeWireEntry(view: DataView, off: number, e: ScopeWireEntry): void {
  const W = LAYOUT.nf_wire_entry;
  view.setUint8(off + W.family, WIRE_FAMILY_SCOPE);
  view.setUint8(off + W.prefixlen, scopeWirePrefixLen(e));
  view.setUint8(off + W.flags, (e.allow ? ALLOW : 0) | (e.deny ? DENY : 0));
  view.setUint32(off + W.rule_id, e.ruleId >>> 0, true);
  const ms = e.expiresAtMs === null ? 0 : Math.max(1, Math.ceil(e.expiresAtMs));
  view.setUint32(off + W.expires_ms, ms % 0x100000000, true);
  view.setUint32(off + W.expires_ms + 4, Math.floor(ms / 0x100000000), true);
  writeScopeKey(view, off + W.addr, e);
}

/**
 * Scope entries as the `scopeWire` bytes KernelFilter.replaceCompiled/upsertCompiled/deleteCompiled
 * send (40 bytes each, in order; for a DELETE only the keys matter).
 */
export function encodeScopeWire(entries: readonly ScopeWireEntry[]): Uint8Array {
  const size = LAYOUT.nf_wire_entry.size;
  const b = new Uint8Array(entries.length * size);
  const view = new DataView(b.buffer);
  for (let i = 0; i < entries.length; i++) writeScopeWireEntry(view, i * size, entries[i]!);
  return b;
}
