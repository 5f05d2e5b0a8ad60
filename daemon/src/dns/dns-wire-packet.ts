/**
 * The dns-packet library behind the same two decoders as dns-wire.ts (readQuestion,
 * readAnswerRecords), for measuring the hand-written codec against the library on the
 * production path: dns-codec.ts selects this one only when a benchmark sets
 * NETFENCE_BENCH_DNS_CODEC=dns-packet. Same contract as dns-wire.ts: lower-case names without
 * a trailing dot, A/AAAA/CNAME answers only, null on a malformed message.
 */
import { isIPv4, isIPv6 } from "node:net";
import dnsPacket from "dns-packet";
import { parseCidr } from "@netfence/proto/parse";
import { firstQuestionEnd, type WireQuestion, type WireRecord } from "./dns-wire.js";

const TYPE_NUMBERS: Record<string, number> = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, NAPTR: 35,
  DS: 43, RRSIG: 46, DNSKEY: 48, SVCB: 64, HTTPS: 65, SPF: 99, ANY: 255, CAA: 257,
};
const PLAIN_LABEL = /^[A-Za-z0-9_-]*$/;

function typeNumber(type: string): number {
  return TYPE_NUMBERS[type] ?? (/^UNKNOWN_(\d+)$/.exec(type) ? Number(type.slice(8)) : -1);
}

const CLASS_NUMBERS: Record<string, number> = { IN: 1, CS: 2, CH: 3, HS: 4, ANY: 255 };

function decode(msg: Buffer): dnsPacket.Packet | null {
  try {
    return dnsPacket.decode(msg);
  } catch {
    return null;
  }
}

function lowerName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

/** readQuestion of dns-wire.ts through dnsPacket.decode. */
export function readQuestion(msg: Buffer): WireQuestion | null {
  // The hand-written codec refuses compressed questions: keep that rule (the offset is needed anyway).
  const end = firstQuestionEnd(msg);
  if (end < 0) return null;
  const q = decode(msg)?.questions?.[0];
  if (q === undefined) return null;
  const type = typeNumber(q.type);
  const qclass = CLASS_NUMBERS[q.class ?? "IN"] ?? -1;
  if (type < 0 || qclass < 0) return null;
  const name = lowerName(q.name);
  return { name, plainLabels: name.split(".").every((l) => PLAIN_LABEL.test(l)), type, qclass, end };
}

/** readAnswerRecords of dns-wire.ts through dnsPacket.decode (a full decode of every section). */
export function readAnswerRecords(msg: Buffer): WireRecord[] | null {
  const p = decode(msg);
  if (p === null) return null;
  const records: WireRecord[] = [];
  for (const a of p.answers ?? []) {
    const ttl = "ttl" in a && typeof a.ttl === "number" ? a.ttl : 0;
    if (a.type === "A" || a.type === "AAAA") {
      // dns-packet's own text form (dotted IPv4, compressed lower-case IPv6), parsed into the
      // bytes the seam carries. dns-packet does not bounds-check rdata: a truncated A record decodes as
      // "198.undefined.undefined.undefined", so the text is validated here.
      if (typeof a.data !== "string" || !(a.type === "A" ? isIPv4(a.data) : isIPv6(a.data))) return null;
      const address = parseCidr(`${a.data}/${a.type === "A" ? 32 : 128}`);
      records.push({ type: a.type, name: lowerName(a.name), ttl, address });
    } else if (a.type === "CNAME") {
      records.push({ type: "CNAME", name: lowerName(a.name), ttl, data: lowerName(a.data) });
    }
  }
  return records;
}
