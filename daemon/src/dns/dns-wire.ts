/**
 * The few raw-wire operations the DNS server needs besides dns-packet's full decode: reading the
 * header, finding the end of the question section, swapping the message id and building error
 * replies (FORMERR, SERVFAIL, REFUSED) straight from the query bytes. All multi-byte fields are
 * big-endian (network byte order), RFC 1035 §4.1.
 */

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
