import dnsPacket from "dns-packet";
import type { Answer } from "dns-packet";
import { formatAddr, formatCidr, parseCidr } from "@netfence/proto/parse";
import { HEADER_LENGTH, TYPE_A, TYPE_AAAA, firstQuestionEnd, readName } from "./dns-wire.js";

/**
 * Takes address records out of an upstream reply, so the workload only sees what it may reach:
 * addresses the rebinding guard refused, and records beyond the attachment's per-answer quota.
 *
 * Rebuilt at the wire level (a 200-record answer at a few hundred a second must not stall the
 * event loop other tenants share): header, the question as sent, then of the answer section only
 * the CNAME records and the A/AAAA records whose address is kept — names written out in full
 * (no compression, so nothing points into a record that was dropped) — and of the other sections
 * only the OPT pseudo-record (EDNS). Other record types of the answer section (DNSSEC signatures,
 * which no longer verify anyway, or anything unusual) are dropped too. A reply whose question is
 * compressed (never seen from a real resolver) goes through dns-packet instead.
 */

const TYPE_CNAME = 5;
const TYPE_OPT = 41;

/** A name as uncompressed wire labels (lower case: DNS names compare case-insensitively). */
function nameBytes(name: string): Buffer {
  if (name.length === 0) return Buffer.from([0]);
  const labels = name.split(".");
  const out = Buffer.allocUnsafe(name.length + 2);
  let o = 0;
  for (const l of labels) {
    out[o++] = l.length;
    o += out.write(l, o, "latin1");
  }
  out[o++] = 0;
  return out.subarray(0, o);
}

/** Offset after a (possibly compressed) name at `offset`, or -1. */
function skipName(msg: Buffer, offset: number): number {
  for (;;) {
    if (offset >= msg.length) return -1;
    const len = msg[offset]!;
    if (len === 0) return offset + 1;
    if ((len & 0xc0) === 0xc0) return offset + 2 <= msg.length ? offset + 2 : -1;
    if (len > 63) return -1;
    offset += 1 + len;
  }
}

function addressText(msg: Buffer, type: number, at: number, rdlength: number): string | null {
  if (type === TYPE_A && rdlength === 4) return `${msg[at]}.${msg[at + 1]}.${msg[at + 2]}.${msg[at + 3]}`;
  if (type === TYPE_AAAA && rdlength === 16) return formatAddr(6, msg.subarray(at, at + 16));
  return null;
}

/**
 * The reply with, in its answer section, only CNAMEs and the A/AAAA records whose address
 * (canonical text) is in `keep`; null when the reply cannot be parsed (the caller answers SERVFAIL).
 */
export function keepAddressRecords(reply: Buffer, keep: ReadonlySet<string>): Buffer | null {
  const qEnd = firstQuestionEnd(reply);
  if (qEnd < 0) return keepWithDnsPacket(reply, keep);
  const an = reply.readUInt16BE(6);
  const ns = reply.readUInt16BE(8);
  const ar = reply.readUInt16BE(10);
  const parts: Buffer[] = [Buffer.from(reply.subarray(0, qEnd))];
  let kept = 0;
  let offset = qEnd;
  for (let i = 0; i < an; i++) {
    const owner = readName(reply, offset);
    if (owner === null || owner[1] + 10 > reply.length) return null;
    const at = owner[1];
    const type = reply.readUInt16BE(at);
    const rdlength = reply.readUInt16BE(at + 8);
    const rdata = at + 10;
    if (rdata + rdlength > reply.length) return null;
    offset = rdata + rdlength;
    if (type === TYPE_CNAME) {
      const target = readName(reply, rdata);
      if (target === null) return null;
      const t = nameBytes(target[0]);
      const fixed = Buffer.from(reply.subarray(at, at + 10));
      fixed.writeUInt16BE(t.length, 8);
      parts.push(nameBytes(owner[0]), fixed, t);
      kept++;
      continue;
    }
    const address = addressText(reply, type, rdata, rdlength);
    if (address === null || !keep.has(address)) continue;
    parts.push(nameBytes(owner[0]), reply.subarray(at, rdata + rdlength));
    kept++;
  }
  // Authority and additional sections: only the OPT pseudo-record survives (its owner is the root).
  let opt = 0;
  for (let i = 0; i < ns + ar; i++) {
    const start = offset;
    const after = skipName(reply, offset);
    if (after < 0 || after + 10 > reply.length) return null;
    const end = after + 10 + reply.readUInt16BE(after + 8);
    if (end > reply.length) return null;
    offset = end;
    if (i >= ns && reply.readUInt16BE(after) === TYPE_OPT && opt === 0 && reply[start] === 0) {
      parts.push(reply.subarray(start, end));
      opt = 1;
    }
  }
  const out = Buffer.concat(parts);
  out.writeUInt16BE(kept, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(opt, 10);
  return out.length >= HEADER_LENGTH ? out : null;
}

/** Canonical text of an address record's data, or null when it is not an address. */
function canonicalAddress(data: unknown): string | null {
  if (typeof data !== "string") return null;
  try {
    const key = formatCidr(parseCidr(data));
    return key.slice(0, key.lastIndexOf("/"));
  } catch {
    return null;
  }
}

/** The general (slow) path: a full decode and re-encode. */
function keepWithDnsPacket(reply: Buffer, keep: ReadonlySet<string>): Buffer | null {
  try {
    const packet = dnsPacket.decode(reply);
    const answers: Answer[] = [];
    for (const a of packet.answers ?? []) {
      if (a.type === "A" || a.type === "AAAA") {
        const address = canonicalAddress(a.data);
        if (address === null || !keep.has(address)) continue;
      }
      answers.push(a);
    }
    return dnsPacket.encode({ ...packet, answers });
  } catch {
    return null;
  }
}
