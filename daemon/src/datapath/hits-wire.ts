/**
 * Rule hit counts on the loader wire (bpf/include/netfence.h "rule hit counts",
 * netfence-protocol.h NF_OP_HITS / NF_OP_HITS_CLEAR). MUST MATCH those headers: the sizes and
 * offsets are in LAYOUT (wire-format.ts) and the constants below are checked by
 * test/unit/datapath/wire-format.test.ts.
 */
import type { RuleHitCount } from "./filter.js";
import { ID_LEN, LAYOUT } from "./wire-format.js";

/** Entries of nf_hits (rule ids 0..HITS_CAP-1); the last is the overflow bucket. */
export const HITS_CAP = 8192;
export const HITS_OVERFLOW = HITS_CAP - 1;

/** enum nf_rule_reserved: the ids the kernel counts decisions made without a policy entry under. */
export const RULE_ID = {
  NONE: 0,
  DEFAULT_DENY: 1,
  DEFAULT_ALLOW: 2,
  BLOCK_ALL: 3,
  DISABLED: 4,
  PROTECTED: 5,
  PROTECTED_DENY: 6,
  ALWAYS_ALLOWED: 7,
  GUARD: 8,
  LOCAL_CLOSED: 9,
  /** A packet of a connection kept across a policy change (NF_SETTING_KEEP, issue 15). */
  KEPT: 10,
  /** The policy lookup ran out of hops over non-matching prefixes: dropped (fail closed). */
  POLICY_DEPTH: 11,
  FIRST: 16,
} as const;


/** NF_OP_HITS reply: the ids with packets > 0, ascending. */
export function decodeHits(b: Buffer): RuleHitCount[] {
  const H = LAYOUT.nf_hits_reply;
  const W = LAYOUT.nf_wire_hit;
  if (b.length < H.size) throw new RangeError(`HITS reply of ${b.length} bytes`);
  const count = b.readUInt32LE(H.count);
  if (b.length < H.size + count * W.size) throw new RangeError(`HITS reply announces ${count} rules in ${b.length} bytes`);
  const out: RuleHitCount[] = [];
  for (let i = 0; i < count; i++) {
    const o = H.size + i * W.size;
    out.push({ ruleId: b.readUInt32LE(o + W.rule_id), packets: b.readBigUInt64LE(o + W.packets), lastHitMs: Number(b.readBigUInt64LE(o + W.last_hit_ms)) });
  }
  return out;
}

/** NF_OP_HITS request: ids [0, upto) and the overflow bucket (0 = all). */
export function encodeHitsRequest(id: string, upto: number): Buffer {
  const L = LAYOUT.nf_hits_req;
  const b = Buffer.alloc(L.size);
  const idBytes = Buffer.from(id, "utf8");
  if (idBytes.length >= ID_LEN) throw new RangeError(`attachment id longer than ${ID_LEN - 1} bytes`);
  idBytes.copy(b, L.id);
  b.writeUInt32LE(Math.max(0, Math.min(upto, HITS_OVERFLOW)), L.upto);
  return b;
}

/** NF_OP_HITS_CLEAR request: zero these rule ids' counters. */
export function encodeHitsClear(id: string, ruleIds: readonly number[]): Buffer {
  const L = LAYOUT.nf_hits_clear_req;
  const b = Buffer.alloc(L.size + ruleIds.length * 4);
  const idBytes = Buffer.from(id, "utf8");
  if (idBytes.length >= ID_LEN) throw new RangeError(`attachment id longer than ${ID_LEN - 1} bytes`);
  idBytes.copy(b, L.id);
  b.writeUInt32LE(ruleIds.length, L.count);
  ruleIds.forEach((r, i) => {
    if (!Number.isInteger(r) || r < 0 || r >= HITS_CAP) throw new RangeError(`rule id ${r} out of range`);
    b.writeUInt32LE(r, L.size + i * 4);
  });
  return b;
}
