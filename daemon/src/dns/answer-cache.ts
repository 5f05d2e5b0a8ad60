import { HEADER_LENGTH, readName, type WireQuestion } from "./dns-wire.js";

/**
 * One attachment's answer cache (as dnsmasq has): a reply the server sent for a question is sent
 * again, without asking upstream and without a kernel write, while it is valid:
 *
 * - only replies the server produced itself after the whole query path (decision, CNAME rule,
 *   rebinding guard, quotas, the addresses in the kernel map): NOERROR with at least one answer
 *   record, not truncated, at most MAX_REPLY_BYTES; never a REFUSED/SERVFAIL/denied answer;
 * - for at most the answer's smallest TTL (answer and authority sections), and never beyond the
 *   moment the kernel entries of its addresses run out (`heldUntilMs` less a second of margin):
 *   a cached reply's addresses are always in the kernel map;
 * - under the same policy object and the same learned-address epoch it was stored under: a new
 *   policy (a domain rule, a mode change) or any removal of a learned address before its deadline
 *   (a deny CIDR pushed, a re-check of the rebinding guard) empties the cache (an address reaching
 *   its deadline does not: no entry outlives its addresses' deadlines);
 * - keyed by transport, the RD and CD bits, the question (name in lower case, type, class) and
 *   the query's EDNS OPT record without its options (payload size, version, DO bit); a query with
 *   other additional records is not answered from the cache. EDNS options are per query (a client
 *   COOKIE, RFC 7873, differs on every query of dig or a stub): a cached reply's OPT record is
 *   stored without options, as dnsmasq's cached answers carry none.
 *
 * A cached reply goes out with the query's id and question spelling (0x20 case) and every TTL
 * lowered by the seconds it spent in the cache. At most `maxEntries` entries (oldest stored
 * first out); 0 disables the cache.
 */

export const DEFAULT_ANSWER_CACHE_ENTRIES = 1024;
export const MAX_ANSWER_CACHE_ENTRIES = 65_536;
/** Larger replies are not cached (a 1,232-byte EDNS payload is the usual safe UDP size). */
export const MAX_REPLY_BYTES = 1232;
/** Kept between a cached reply's end of life and its addresses' kernel deadline. */
export const KERNEL_MARGIN_MS = 1000;

const FLAG_TC = 0x0200;
const KEY_FLAGS = 0x0110; // RD | CD
const TYPE_OPT = 41;

interface Entry {
  readonly reply: Buffer;
  readonly storedAtMs: number;
  readonly expiresAtMs: number;
  /** Offsets of the TTL fields of every record but OPT, and their stored values. */
  readonly ttlOffsets: readonly number[];
  readonly ttls: readonly number[];
}

/** What a stored reply's validity depends on (see the file comment). */
export interface CacheGeneration {
  readonly policy: object;
  readonly epoch: number;
}

export class AnswerCache {
  private readonly entries = new Map<string, Entry>();
  private policy: object | null = null;
  private epoch = Number.NaN;

  /** `currentPolicy` / `currentEpoch`: the policy object and learned-address epoch now (read on every lookup and store). */
  constructor(
    readonly maxEntries: number,
    private readonly currentPolicy: () => object,
    private readonly currentEpoch: () => number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Empties the cache when the policy or the epoch moved since its entries were stored; false if `at` is not now's. */
  private sync(at?: CacheGeneration): boolean {
    const policy = this.currentPolicy();
    const epoch = this.currentEpoch();
    if (at !== undefined && (at.policy !== policy || at.epoch !== epoch)) return false;
    if (policy !== this.policy || epoch !== this.epoch) {
      this.entries.clear();
      this.policy = policy;
      this.epoch = epoch;
    }
    return true;
  }

  /** The reply to `query` from the cache, ready to send, or null. */
  lookup(query: Buffer, question: WireQuestion, viaTcp: boolean): Buffer | null {
    if (this.maxEntries === 0 || !question.plainLabels) return null;
    this.sync();
    if (this.entries.size === 0) return null;
    const key = cacheKey(query, question, viaTcp);
    if (key === null) return null;
    const e = this.entries.get(key);
    if (e === undefined) return null;
    const now = this.now();
    if (now >= e.expiresAtMs) {
      this.entries.delete(key);
      return null;
    }
    const reply = Buffer.allocUnsafe(e.reply.length);
    e.reply.copy(reply);
    query.copy(reply, 0, 0, 2); // the query's id
    query.copy(reply, HEADER_LENGTH, HEADER_LENGTH, question.end); // its question, as spelled
    const age = Math.floor((now - e.storedAtMs) / 1000);
    if (age > 0) for (let i = 0; i < e.ttlOffsets.length; i++) reply.writeUInt32BE(Math.max(0, e.ttls[i]! - age), e.ttlOffsets[i]!);
    return reply;
  }

  /** The policy and epoch now: what a query records when it starts (see `store`). */
  generation(): CacheGeneration {
    return { policy: this.currentPolicy(), epoch: this.currentEpoch() };
  }

  /**
   * Stores `reply` (the one about to be sent for `query`) when it may be cached. `at`: the
   * generation when the query was decided (before its upstream query and kernel write) — if the
   * policy or the epoch moved since, nothing is stored. `heldUntilMs`: the earliest kernel
   * deadline of its addresses (Infinity when it has none to hold).
   */
  store(query: Buffer, question: WireQuestion, viaTcp: boolean, reply: Buffer, at: CacheGeneration, heldUntilMs: number): void {
    if (this.maxEntries === 0 || !question.plainLabels || reply.length > MAX_REPLY_BYTES || reply.length < HEADER_LENGTH) return;
    const flags = reply.readUInt16BE(2);
    if ((flags & 0xf) !== 0 || (flags & FLAG_TC) !== 0 || reply.readUInt16BE(6) === 0) return;
    const fields = ttlFields(reply);
    if (fields === null || fields.minTtl <= 0) return;
    const key = cacheKey(query, question, viaTcp);
    if (key === null) return;
    const now = this.now();
    const expiresAtMs = Math.min(now + fields.minTtl * 1000, heldUntilMs - KERNEL_MARGIN_MS);
    if (expiresAtMs <= now || !this.sync(at)) return;
    if (fields.optRdata !== null && fields.optRdata.end !== reply.length) return; // OPT not last: leave such a reply alone
    // Its own memory (not a slice of Node's shared 8 KiB pool, which one long-lived entry would pin).
    const length = fields.optRdata === null ? reply.length : fields.optRdata.at;
    const kept = Buffer.allocUnsafeSlow(length);
    reply.copy(kept, 0, 0, length);
    if (fields.optRdata !== null) kept.writeUInt16BE(0, length - 2); // OPT without options
    this.entries.delete(key);
    while (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { reply: kept, storedAtMs: now, expiresAtMs, ttlOffsets: fields.offsets, ttls: fields.ttls });
  }

  clear(): void {
    this.entries.clear();
  }
}

/** The key of a query; null (not cached) unless it is one question and at most an OPT record. */
function cacheKey(query: Buffer, question: WireQuestion, viaTcp: boolean): string | null {
  const flags = query.readUInt16BE(2) & KEY_FLAGS;
  const base = `${viaTcp ? "t" : "u"}${flags}|${question.type}|${question.qclass}|${question.name}`;
  const ar = query.readUInt16BE(10);
  if (query.readUInt16BE(4) !== 1 || query.readUInt16BE(6) !== 0 || query.readUInt16BE(8) !== 0 || ar > 1) return null;
  if (ar === 0) return question.end === query.length ? base : null;
  // One OPT record: root name, type 41, class = payload size, TTL = extended rcode, version, flags (DO).
  const at = question.end;
  if (at + 11 > query.length || query[at] !== 0 || query.readUInt16BE(at + 1) !== TYPE_OPT) return null;
  if (at + 11 + query.readUInt16BE(at + 9) !== query.length) return null;
  return `${base}|e${query.readUInt16BE(at + 3)}:${query.readUInt32BE(at + 5)}`;
}

/**
 * The TTL fields of every record of a reply (OPT's is flags, not a TTL, and is left out), the
 * smallest TTL of the answer and authority sections and where the OPT record's options are;
 * null when the message does not parse.
 */
export function ttlFields(msg: Buffer): { offsets: number[]; ttls: number[]; minTtl: number; optRdata: { at: number; end: number } | null } | null {
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  const ns = msg.readUInt16BE(8);
  const ar = msg.readUInt16BE(10);
  let offset = HEADER_LENGTH;
  for (let i = 0; i < qd; i++) {
    const q = readName(msg, offset);
    if (q === null || q[1] + 4 > msg.length) return null;
    offset = q[1] + 4;
  }
  const offsets: number[] = [];
  const ttls: number[] = [];
  let minTtl = Infinity;
  let optRdata: { at: number; end: number } | null = null;
  for (let i = 0; i < an + ns + ar; i++) {
    const n = readName(msg, offset);
    if (n === null || n[1] + 10 > msg.length) return null;
    const at = n[1];
    const type = msg.readUInt16BE(at);
    const ttl = msg.readUInt32BE(at + 4);
    const end = at + 10 + msg.readUInt16BE(at + 8);
    if (end > msg.length) return null;
    if (type !== TYPE_OPT) {
      offsets.push(at + 4);
      ttls.push(ttl);
      if (i < an + ns && ttl < minTtl) minTtl = ttl;
    } else {
      if (optRdata !== null) return null; // two OPT records: malformed (RFC 6891 §6.1.1)
      optRdata = { at: at + 10, end };
    }
    offset = end;
  }
  return { offsets, ttls, minTtl: minTtl === Infinity ? 0 : Math.min(minTtl, 0x7fffffff), optRdata };
}
