/**
 * The DNS server's wire codec, hand-written: reading the header and the question, the A/AAAA/CNAME
 * records of an answer, swapping the message id, and building error replies (FORMERR, SERVFAIL,
 * REFUSED) and address replies straight from the bytes (dns-packet's full decode and re-encode is
 * only reply-rewrite.ts's rare slow path). All multi-byte fields are big-endian (network byte
 * order), RFC 1035 §4.1. Fuzzed by bench/fuzz (targets dns-wire and dns-answer).
 *
 * Against dns-packet for the two decoders (readQuestion, readAnswerRecords), measured through the
 * real daemon (bench/dns/codec-bench.ts, bench/results/dns-codec*.json, docs/benchmarks.md,
 * 2026-12-03): the decoders alone are 2.0-2.1x faster here on a one-record answer (1.28-1.39 vs
 * 2.66-2.82 µs per query) and 3.4-3.6x on eight records (1.9-2.0 vs 6.8-6.9 µs), but on the
 * production path that is about 4 % of the daemon's 32-64 µs of CPU per query and within the
 * shared test machine's noise: daemon CPU per query dns-packet/hand-written 0.88-1.12, queries/s
 * 0.84-1.18, p99 not worse with dns-packet in three runs. Not material on speed; it stays for
 * the DNS -> kernel seam (issue 12: addresses carried as bytes from this decoder on; dns-packet
 * gives text) and because dns-packet does not bounds-check rdata (a truncated A record decodes
 * as "198.undefined.undefined.undefined").
 */
import type { Cidr } from "@netfence/proto/parse";

export const HEADER_LENGTH = 12;

export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NOTIMP = 4;
export const RCODE_REFUSED = 5;

const FLAG_QR = 0x8000;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
const OPCODE_MASK = 0x7800;

export function readId(msg: Buffer): number {
  return msg.readUInt16BE(0);
}

export function writeId(msg: Buffer, id: number): void {
  msg.writeUInt16BE(id, 0);
}

export function isResponse(msg: Buffer): boolean {
  return (msg.readUInt16BE(2) & FLAG_QR) !== 0;
}

export function isTruncated(msg: Buffer): boolean {
  return (msg.readUInt16BE(2) & FLAG_TC) !== 0;
}

export function opcodeOf(msg: Buffer): number {
  return (msg.readUInt16BE(2) & OPCODE_MASK) >> 11;
}

export function questionCount(msg: Buffer): number {
  return msg.readUInt16BE(4);
}

/**
 * Offset just past the first question (name + type + class), or -1 when the message does not
 * hold one well-formed, uncompressed question. Queries never need compression in the question.
 */
export function firstQuestionEnd(msg: Buffer): number {
  if (msg.length < HEADER_LENGTH || questionCount(msg) < 1) return -1;
  let offset = HEADER_LENGTH;
  let nameLength = 0;
  for (;;) {
    if (offset >= msg.length) return -1;
    const len = msg[offset]!;
    if (len === 0) {
      offset += 1;
      break;
    }
    if (len > 63) return -1; // compression pointer or reserved label type
    nameLength += len + 1;
    if (nameLength > 255) return -1;
    offset += 1 + len;
  }
  offset += 4;
  return offset <= msg.length ? offset : -1;
}

/** True when both messages carry the same first question (name compared case-insensitively). */
export function sameQuestion(query: Buffer, queryQuestionEnd: number, response: Buffer): boolean {
  if (response.length < queryQuestionEnd || questionCount(response) < 1) return false;
  for (let i = HEADER_LENGTH; i < queryQuestionEnd; i++) {
    let a = query[i]!;
    let b = response[i]!;
    if (a >= 0x41 && a <= 0x5a) a |= 0x20;
    if (b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (a !== b) return false;
  }
  return true;
}

/**
 * An error reply to `query`: same id, opcode and RD bit, RA set, the given rcode, and the query's
 * question echoed when it can be located (otherwise a bare header, as for FORMERR on garbage).
 * Returns null when not even a header can be read.
 */
export function errorReply(query: Buffer, rcode: number): Buffer | null {
  if (query.length < HEADER_LENGTH) return null;
  const qEnd = firstQuestionEnd(query);
  const reply = Buffer.alloc(qEnd > 0 ? qEnd : HEADER_LENGTH);
  const flags = query.readUInt16BE(2);
  reply.writeUInt16BE(readId(query), 0);
  reply.writeUInt16BE(FLAG_QR | (flags & (OPCODE_MASK | FLAG_RD)) | FLAG_RA | (rcode & 0xf), 2);
  if (qEnd > 0) {
    reply.writeUInt16BE(1, 4);
    query.copy(reply, HEADER_LENGTH, HEADER_LENGTH, qEnd);
  }
  return reply;
}

export interface WireQuestion {
  /** Lower case, dot-joined labels, no trailing dot ("" for the root). */
  readonly name: string;
  /** Every label is letters, digits, '-' or '_' (names that policy rules can describe). */
  readonly plainLabels: boolean;
  readonly type: number;
  readonly qclass: number;
  /** Offset just past the question. */
  readonly end: number;
}

/** Reads the first question straight from the wire, or null when it is not well-formed. */
export function readQuestion(msg: Buffer): WireQuestion | null {
  const end = firstQuestionEnd(msg);
  if (end < 0) return null;
  let name = "";
  let plain = true;
  let offset = HEADER_LENGTH;
  for (;;) {
    const len = msg[offset]!;
    if (len === 0) break;
    for (let i = offset + 1; i <= offset + len; i++) {
      const c = msg[i]!;
      const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f;
      if (!ok) plain = false;
    }
    const label = msg.toString("latin1", offset + 1, offset + 1 + len);
    name = name.length === 0 ? label : `${name}.${label}`;
    offset += 1 + len;
  }
  return { name: name.toLowerCase(), plainLabels: plain, type: msg.readUInt16BE(end - 4), qclass: msg.readUInt16BE(end - 2), end };
}

const TYPE_NAMES: Record<number, string> = {
  1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV", 35: "NAPTR",
  43: "DS", 46: "RRSIG", 48: "DNSKEY", 64: "SVCB", 65: "HTTPS", 99: "SPF", 255: "ANY", 257: "CAA",
};

/** Mnemonic of a query type ("A", "AAAA", …; RFC 3597 "TYPEnnn" for the rest). */
export function typeName(type: number): string {
  return TYPE_NAMES[type] ?? `TYPE${type}`;
}

export const TYPE_A = 1;
export const TYPE_AAAA = 28;

/**
 * An answer-section record the server cares about; others are skipped while parsing. An address
 * record carries its address as bytes (a /32 or /128 Cidr copied from the rdata): that is the
 * form it keeps down to the loader frame (learned-sink.ts), nothing re-parses it.
 */
export type WireRecord = WireAddressRecord | WireCnameRecord;

export interface WireAddressRecord {
  readonly type: "A" | "AAAA";
  /** Lower case, no trailing dot. */
  readonly name: string;
  readonly ttl: number;
  readonly address: Cidr;
}

export interface WireCnameRecord {
  readonly type: "CNAME";
  /** Lower case, no trailing dot. */
  readonly name: string;
  readonly ttl: number;
  /** The target, lower case. */
  readonly data: string;
}

const TYPE_CNAME = 5;

/**
 * A view of `length` bytes at `at` (no copy: a copy per record was a new ArrayBuffer backing
 * store per answer address on every query, which each scavenge then had to sweep). Nothing writes
 * into a received message afterwards; what keeps an address beyond the query (the learned state)
 * takes its own copy where it records it (plan/learned-plan.ts), so no reply stays pinned.
 */
function viewBytes(msg: Buffer, at: number, length: number): Uint8Array {
  return new Uint8Array(msg.buffer, msg.byteOffset + at, length);
}
const MAX_POINTER_JUMPS = 64;

/** Reads a possibly compressed name at `offset`; returns [name (lower case), offset after it] or null. */
export function readName(msg: Buffer, offset: number): [string, number] | null {
  let name = "";
  let next = -1;
  let jumps = 0;
  let length = 0;
  for (;;) {
    if (offset >= msg.length) return null;
    const len = msg[offset]!;
    if (len === 0) {
      if (next < 0) next = offset + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (offset + 1 >= msg.length || ++jumps > MAX_POINTER_JUMPS) return null;
      if (next < 0) next = offset + 2;
      offset = ((len & 0x3f) << 8) | msg[offset + 1]!;
      continue;
    }
    if (len > 63 || offset + 1 + len > msg.length) return null;
    length += len + 1;
    if (length > 255) return null;
    const label = msg.toString("latin1", offset + 1, offset + 1 + len);
    name = name.length === 0 ? label : `${name}.${label}`;
    offset += 1 + len;
  }
  return [name.toLowerCase(), next];
}


/**
 * The A, AAAA and CNAME records of a response's answer section, straight from the wire (a full
 * decode of every section costs several times more). Null when the message is malformed.
 */
export function readAnswerRecords(msg: Buffer): WireRecord[] | null {
  if (msg.length < HEADER_LENGTH) return null;
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  let offset = HEADER_LENGTH;
  for (let i = 0; i < qd; i++) {
    const q = readName(msg, offset);
    if (q === null) return null;
    offset = q[1] + 4;
  }
  const records: WireRecord[] = [];
  // Owner names are mostly one compression pointer to the same name (the question): decode each
  // pointer target once per message (a 200-record answer is one name decoded, not 200).
  const byTarget = new Map<number, string | null>();
  const owner = (at: number): [string, number] | null => {
    if (at + 1 >= msg.length || (msg[at]! & 0xc0) !== 0xc0) return readName(msg, at);
    const target = ((msg[at]! & 0x3f) << 8) | msg[at + 1]!;
    let name = byTarget.get(target);
    if (name === undefined) {
      name = readName(msg, target)?.[0] ?? null;
      byTarget.set(target, name);
    }
    return name === null ? null : [name, at + 2];
  };
  for (let i = 0; i < an; i++) {
    const n = owner(offset);
    if (n === null || n[1] + 10 > msg.length) return null;
    const at = n[1];
    const type = msg.readUInt16BE(at);
    const ttl = msg.readUInt32BE(at + 4);
    const rdlength = msg.readUInt16BE(at + 8);
    const rdata = at + 10;
    if (rdata + rdlength > msg.length) return null;
    if (type === TYPE_A && rdlength === 4) {
      records.push({ type: "A", name: n[0], ttl, address: { family: 4, addr: viewBytes(msg, rdata, 4), prefixLen: 32 } });
    } else if (type === TYPE_AAAA && rdlength === 16) {
      records.push({ type: "AAAA", name: n[0], ttl, address: { family: 6, addr: viewBytes(msg, rdata, 16), prefixLen: 128 } });
    } else if (type === TYPE_CNAME) {
      const target = readName(msg, rdata);
      if (target === null) return null;
      records.push({ type: "CNAME", name: n[0], ttl, data: target[0] });
    } else if (type === TYPE_A || type === TYPE_AAAA) {
      return null; // an address record of the wrong size
    }
    offset = rdata + rdlength;
  }
  return records;
}

/**
 * A NOERROR reply to `query` carrying `addresses` as A/AAAA records of the asked name (each
 * owner name a pointer to the question, so the client sees its own spelling), e.g. the control
 * plane's own answer in proxy mode. Null when the query has no well-formed question.
 */
export function addressReply(query: Buffer, addresses: readonly { family: 4 | 6; bytes: Uint8Array }[], ttlSeconds: number): Buffer | null {
  const qEnd = firstQuestionEnd(query);
  if (qEnd < 0) return null;
  let length = qEnd;
  for (const a of addresses) length += 12 + a.bytes.length;
  const reply = Buffer.alloc(length);
  query.copy(reply, 0, 0, qEnd);
  const flags = query.readUInt16BE(2);
  reply.writeUInt16BE(FLAG_QR | (flags & (OPCODE_MASK | FLAG_RD)) | FLAG_RA | RCODE_NOERROR, 2);
  reply.writeUInt16BE(1, 4);
  reply.writeUInt16BE(addresses.length, 6);
  reply.writeUInt16BE(0, 8);
  reply.writeUInt16BE(0, 10);
  let offset = qEnd;
  const ttl = Math.min(Math.max(0, Math.floor(ttlSeconds)), 0x7fffffff);
  for (const a of addresses) {
    reply.writeUInt16BE(0xc000 | HEADER_LENGTH, offset); // name: pointer to the question's name
    reply.writeUInt16BE(a.family === 4 ? TYPE_A : TYPE_AAAA, offset + 2);
    reply.writeUInt16BE(1, offset + 4); // class IN
    reply.writeUInt32BE(ttl, offset + 6);
    reply.writeUInt16BE(a.bytes.length, offset + 10);
    reply.set(a.bytes, offset + 12);
    offset += 12 + a.bytes.length;
  }
  return reply;
}
