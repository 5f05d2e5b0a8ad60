/**
 * VERIFY and RESTORE on the wire (bpf/include/netfence-repair.h, bpf/loader/tamper.c): the
 * request encoder, the reply decoders and the constants, checked against the header by
 * test/unit/datapath/wire-format.test.ts like the rest of wire-format.ts.
 */
import { ID_LEN, LAYOUT, MODE_NAMES, SETTING_AUDIT } from "./wire-format.js";
import type { FilterMode } from "./filter.js";

export const VERIFY = { PINS: 1, CONTENT: 2 } as const;
export const TAMPER = { DETACHED: 1, PROG_REPLACED: 2, PIN_REPLACED: 4, PIN_MISSING: 8, STATE: 16, UNKNOWN: 32 } as const;
export const SUM_BASIS_A = 0x811c9dc5;
export const SUM_BASIS_B = 0x5bd1e995;
/** NF_SUM_RECORD: bytes of one entry's checksum record (24 since session 21: the scope id and kinds). */
export const SUM_RECORD = 24;
/** pin_names in bpf/loader/registry.c, by bit of nf_verify_result.bad_pins. */
/** pin_names in bpf/loader/registry.c, by bit; the last two exist for cgroup attachments only (layout 6). */
export const PIN_NAMES = [
  "state", "counters", "v4_exact", "v4_lpm", "v6_exact", "v6_lpm", "v4_large", "v6_large", "prog", "link", "hits",
  "scope", "sk", "prog_sock", "link_sock",
] as const;

export interface VerifyItem {
  readonly id: string;
  readonly pins: boolean;
  readonly content: boolean;
}

export interface VerifyResult {
  readonly tamper: number;
  readonly progId: number;
  readonly seenProgId: number;
  readonly mode: FilterMode | null;
  readonly audit: boolean;
  readonly entries: number;
  readonly sumA: number;
  readonly sumB: number;
  /** Names of the pins missing or naming another object. */
  readonly badPins: string[];
  readonly contentChecked: boolean;
}

export function encodeVerify(items: readonly VerifyItem[]): Buffer {
  const L = LAYOUT.nf_verify_item;
  const b = Buffer.alloc(8 + items.length * L.size);
  b.writeUInt32LE(items.length, 0);
  items.forEach((it, i) => {
    const off = 8 + i * L.size;
    b.write(it.id, off + L.id, Math.min(Buffer.byteLength(it.id), ID_LEN - 1), "utf8");
    b.writeUInt32LE((it.pins ? VERIFY.PINS : 0) | (it.content ? VERIFY.CONTENT : 0), off + L.checks);
  });
  return b;
}

export function decodeVerify(b: Buffer, count: number): VerifyResult[] {
  const L = LAYOUT.nf_verify_result;
  if (b.length < count * L.size) throw new RangeError(`VERIFY reply of ${b.length} bytes for ${count} items`);
  const out: VerifyResult[] = [];
  for (let i = 0; i < count; i++) {
    const o = i * L.size;
    const bad = b.readUInt32LE(o + L.bad_pins);
    const flags = b.readUInt32LE(o + L.flags);
    out.push({
      tamper: b.readUInt32LE(o + L.tamper),
      progId: b.readUInt32LE(o + L.prog_id),
      seenProgId: b.readUInt32LE(o + L.seen_prog_id),
      mode: MODE_NAMES[b.readUInt32LE(o + L.mode)] ?? null,
      audit: (flags & SETTING_AUDIT) !== 0,
      entries: b.readUInt32LE(o + L.entries),
      sumA: b.readUInt32LE(o + L.sum_a),
      sumB: b.readUInt32LE(o + L.sum_b),
      badPins: PIN_NAMES.filter((_, bit) => (bad & (1 << bit)) !== 0),
      contentChecked: (b.readUInt32LE(o + L.checked) & VERIFY.CONTENT) !== 0,
    });
  }
  return out;
}

export function decodeRestore(b: Buffer): { repinned: string[]; stateFixed: boolean } {
  const L = LAYOUT.nf_restore_reply;
  if (b.length < L.size) throw new RangeError(`RESTORE reply of ${b.length} bytes`);
  const bits = b.readUInt32LE(L.repinned);
  return { repinned: PIN_NAMES.filter((_, bit) => (bits & (1 << bit)) !== 0), stateFixed: b.readUInt32LE(L.state_fixed) !== 0 };
}
