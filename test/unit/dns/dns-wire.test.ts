import { describe, expect, it } from "vitest";
import dnsPacket from "dns-packet";
import type { Answer } from "dns-packet";
import { addressReply, errorReply, firstQuestionEnd, readAnswerRecords, readQuestion, sameQuestion } from "../../../daemon/src/dns/dns-wire.js";
import { answerAddresses } from "../../../daemon/src/dns/answer-addresses.js";
import { formatAddr, type Cidr } from "@netfence/proto/parse";
import { queryBytes } from "./helpers/fake-dns.js";

function response(answers: Answer[], name = "www.Example.com"): Buffer {
  return Buffer.from(dnsPacket.encode({ type: "response", id: 1, questions: [{ type: "A", name }], answers }));
}

describe("readQuestion", () => {
  it("reads name (lower-cased), type and class", () => {
    const q = readQuestion(queryBytes("WWW.Example.COM", "AAAA"));
    expect(q).toMatchObject({ name: "www.example.com", plainLabels: true, type: 28, qclass: 1 });
  });

  it("flags labels with characters rules cannot describe", () => {
    expect(readQuestion(queryBytes("_srv._tcp.a-b.example"))?.plainLabels).toBe(true);
    const raw = Buffer.from(queryBytes("ab.example"));
    raw[13] = 0x20; // ' '
    expect(readQuestion(raw)?.plainLabels).toBe(false);
  });

  it("returns null for compressed, truncated or over-long questions", () => {
    const q = Buffer.from(queryBytes("a.example"));
    expect(readQuestion(q.subarray(0, q.length - 1))).toBeNull();
    const pointer = Buffer.concat([q.subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
    expect(readQuestion(pointer)).toBeNull();
    const long = Buffer.concat([q.subarray(0, 12), Buffer.alloc(5 * 64, 0), Buffer.from([0, 0, 1, 0, 1])]);
    for (let i = 0; i < 5; i++) long.fill(0x61, 12 + i * 64, 12 + (i + 1) * 64).writeUInt8(63, 12 + i * 64);
    expect(firstQuestionEnd(long)).toBe(-1);
  });
});

describe("errorReply and sameQuestion", () => {
  it("echoes id, RD and the question with the rcode", () => {
    const q = queryBytes("x.example", "A", 0x4242);
    const r = errorReply(q, 5)!;
    const p = dnsPacket.decode(r);
    expect(p).toMatchObject({ id: 0x4242, type: "response", rcode: "REFUSED", flag_rd: true, flag_ra: true });
    expect(p.questions).toEqual([{ name: "x.example", type: "A", class: "IN" }]);
    expect(errorReply(Buffer.alloc(5), 1)).toBeNull();
  });

  it("compares questions case-insensitively", () => {
    const q = queryBytes("x.example");
    expect(sameQuestion(q, firstQuestionEnd(q), response([], "X.EXAMPLE"))).toBe(true);
    expect(sameQuestion(q, firstQuestionEnd(q), response([], "y.example"))).toBe(false);
  });
});

describe("addressReply", () => {
  it("answers the question with A/AAAA records pointing at the asked name", () => {
    const q = queryBytes("Mixed.Case.example", "AAAA", 0x0102);
    const r = dnsPacket.decode(addressReply(q, [{ family: 6, bytes: Uint8Array.from([0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 5]) }], 42)!);
    expect(r).toMatchObject({ id: 0x0102, type: "response", rcode: "NOERROR", flag_rd: true });
    expect(r.questions).toEqual([{ name: "Mixed.Case.example", type: "AAAA", class: "IN" }]);
    expect(r.answers).toEqual([{ name: "Mixed.Case.example", type: "AAAA", ttl: 42, class: "IN", flush: false, data: "2001:db8::5" }]);
    expect(readAnswerRecords(addressReply(q, [], 1)!)).toEqual([]);
  });
});

describe("readAnswerRecords", () => {
  it("matches dns-packet on A, AAAA and CNAME records with name compression", () => {
    const answers: Answer[] = [
      { type: "CNAME", name: "www.Example.com", ttl: 300, data: "Edge.CDN.example.net" },
      { type: "A", name: "edge.cdn.example.net", ttl: 20, data: "192.0.2.10" },
      { type: "AAAA", name: "edge.cdn.example.net", ttl: 30, data: "2001:db8::10" },
      { type: "AAAA", name: "edge.cdn.example.net", ttl: 30, data: "2001:db8:0:1:0:0:0:1" },
      { type: "AAAA", name: "edge.cdn.example.net", ttl: 30, data: "::" },
      { type: "AAAA", name: "edge.cdn.example.net", ttl: 30, data: "fe80::1:0:0:1" },
      { type: "TXT", name: "www.example.com", ttl: 5, data: "skip me" },
      { type: "MX", name: "www.example.com", ttl: 5, data: { preference: 1, exchange: "mx.example.com" } },
    ];
    const records = readAnswerRecords(response(answers))?.map((r) => (r.type === "CNAME" ? r : { type: r.type, name: r.name, ttl: r.ttl, data: formatAddr(r.address.family, r.address.addr) }));
    expect(records).toEqual([
      { type: "CNAME", name: "www.example.com", ttl: 300, data: "edge.cdn.example.net" },
      { type: "A", name: "edge.cdn.example.net", ttl: 20, data: "192.0.2.10" },
      { type: "AAAA", name: "edge.cdn.example.net", ttl: 30, data: "2001:db8::10" },
      { type: "AAAA", name: "edge.cdn.example.net", ttl: 30, data: "2001:db8:0:1::1" },
      { type: "AAAA", name: "edge.cdn.example.net", ttl: 30, data: "::" },
      { type: "AAAA", name: "edge.cdn.example.net", ttl: 30, data: "fe80::1:0:0:1" },
    ]);
  });

  it("returns null for truncated or looping messages", () => {
    const full = response([{ type: "A", name: "www.example.com", ttl: 1, data: "192.0.2.1" }]);
    for (let cut = 13; cut < full.length; cut += 3) expect(readAnswerRecords(full.subarray(0, cut))).toBeNull();
    const loop = Buffer.from(full);
    const answerStart = firstQuestionEnd(loop);
    loop.writeUInt16BE(0xc000 | answerStart, answerStart); // the answer's name points at itself
    expect(readAnswerRecords(loop)).toBeNull();
  });
});

const asText = (c: Cidr) => ({ family: c.family, address: formatAddr(c.family, c.addr) });

describe("answerAddresses (CNAME semantics: the query name decides, an explicit deny in the chain refuses)", () => {
  const none = (): boolean => false;
  it("stops at CNAME loops and overlong chains (broken: nothing opened)", () => {
    const loop = readAnswerRecords(response([
      { type: "CNAME", name: "www.example.com", ttl: 1, data: "a.example.com" },
      { type: "CNAME", name: "a.example.com", ttl: 1, data: "www.example.com" },
      { type: "A", name: "a.example.com", ttl: 1, data: "192.0.2.1" },
    ]))!;
    expect(answerAddresses(loop, "www.example.com", none)).toMatchObject({ addresses: [], broken: true, deniedName: null });
    const chain: Answer[] = [];
    for (let i = 0; i < 20; i++) chain.push({ type: "CNAME", name: i === 0 ? "www.example.com" : `c${i}.example.com`, ttl: 1, data: `c${i + 1}.example.com` });
    chain.push({ type: "A", name: "c20.example.com", ttl: 1, data: "192.0.2.1" });
    expect(answerAddresses(readAnswerRecords(response(chain))!, "www.example.com", none)).toMatchObject({ addresses: [], broken: true });
  });

  it("takes the minimum TTL and gives 0 when there are no addresses", () => {
    const r = readAnswerRecords(response([
      { type: "CNAME", name: "www.example.com", ttl: 40, data: "b.example.com" },
      { type: "A", name: "b.example.com", ttl: 70, data: "192.0.2.1" },
    ]))!;
    expect(answerAddresses(r, "WWW.example.com.", none)).toMatchObject({ ttlSeconds: 40, chain: ["www.example.com", "b.example.com"], deniedName: null, broken: false });
    expect(answerAddresses([], "www.example.com", none)).toMatchObject({ addresses: [], ttlSeconds: 0 });
  });

  it("follows a CNAME into another zone and takes its addresses (no rule needed for the target)", () => {
    const r = readAnswerRecords(response([
      { type: "CNAME", name: "files.pythonhosted.org", ttl: 300, data: "dualstack.python.map.fastly.net" },
      { type: "A", name: "dualstack.python.map.fastly.net", ttl: 30, data: "151.101.0.223" },
      { type: "AAAA", name: "dualstack.python.map.fastly.net", ttl: 30, data: "2a04:4e42::223" },
    ]))!;
    const found = answerAddresses(r, "files.pythonhosted.org", none);
    expect(found.addresses.map(asText)).toEqual([{ family: 4, address: "151.101.0.223" }, { family: 6, address: "2a04:4e42::223" }]);
    expect(found.chain).toEqual(["files.pythonhosted.org", "dualstack.python.map.fastly.net"]);
  });

  it("refuses the whole answer when an explicit deny matches any name of the chain", () => {
    const r = readAnswerRecords(response([
      { type: "CNAME", name: "a.test", ttl: 60, data: "mid.example" },
      { type: "CNAME", name: "mid.example", ttl: 60, data: "edge.cdn.net" },
      { type: "A", name: "edge.cdn.net", ttl: 60, data: "198.51.100.7" },
    ]))!;
    const denyCdn = (n: string): boolean => n === "cdn.net" || n.endsWith(".cdn.net");
    expect(answerAddresses(r, "a.test", denyCdn)).toMatchObject({ addresses: [], deniedName: "edge.cdn.net" });
    expect(answerAddresses(r, "a.test", (n) => n === "mid.example")).toMatchObject({ addresses: [], deniedName: "mid.example" });
    expect(answerAddresses(r, "a.test", none).addresses.map(asText)).toEqual([{ family: 4, address: "198.51.100.7" }]);
  });

  it("takes at most maxRecords address records and counts the rest", () => {
    const r = readAnswerRecords(response(Array.from({ length: 10 }, (_, i) => ({ type: "A" as const, name: "many.test", ttl: 60, data: `192.0.2.${i + 1}` }))))!;
    const found = answerAddresses(r, "many.test", none, 3);
    expect(found.addresses.map((a) => asText(a).address)).toEqual(["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    expect(found.overQuota).toBe(7);
  });
});
