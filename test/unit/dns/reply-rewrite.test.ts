import { describe, expect, it } from "vitest";
import dnsPacket from "dns-packet";
import { keepAddressRecords } from "../../../daemon/src/dns/reply-rewrite.js";

// Taking refused and over-quota addresses out of an upstream reply (the rare path of the DNS
// server), at the wire level.

function reply(answers: dnsPacket.Answer[], extra: Partial<dnsPacket.Packet> = {}): Buffer {
  return dnsPacket.encode({
    type: "response", id: 0x4242, flags: dnsPacket.RECURSION_AVAILABLE | dnsPacket.RECURSION_DESIRED,
    questions: [{ type: "A", name: "WWW.Example.test", class: "IN" }], answers, ...extra,
  });
}

describe("keepAddressRecords", () => {
  it("keeps the question as asked, CNAMEs, the kept addresses and EDNS; drops the rest and the authority section", () => {
    const r = reply(
      [
        { type: "CNAME", name: "www.example.test", ttl: 60, data: "edge.cdn.test" },
        { type: "A", name: "edge.cdn.test", ttl: 30, data: "169.254.169.254" },
        { type: "A", name: "edge.cdn.test", ttl: 30, data: "192.0.2.1" },
        { type: "AAAA", name: "edge.cdn.test", ttl: 30, data: "2001:db8::1" },
        { type: "TXT", name: "edge.cdn.test", ttl: 30, data: "x" },
      ],
      {
        authorities: [{ type: "NS", name: "cdn.test", ttl: 60, data: "ns.cdn.test" }],
        additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, options: [] } as unknown as dnsPacket.Answer],
      },
    );
    const out = dnsPacket.decode(keepAddressRecords(r, new Set(["192.0.2.1", "2001:db8::1"]))!);
    expect(out.id).toBe(0x4242);
    expect(out.questions).toEqual([{ name: "WWW.Example.test", type: "A", class: "IN" }]);
    expect(out.answers?.map((a) => [a.type, a.name, a.data])).toEqual([
      ["CNAME", "www.example.test", "edge.cdn.test"], ["A", "edge.cdn.test", "192.0.2.1"], ["AAAA", "edge.cdn.test", "2001:db8::1"],
    ]);
    expect(out.authorities).toEqual([]);
    expect(out.additionals?.map((a) => a.type)).toEqual(["OPT"]);
  });

  it("handles compressed owner names (as real resolvers send them) and 200-record answers", () => {
    // dns-packet does not compress: point every owner at the question name by hand.
    const raw = reply(Array.from({ length: 200 }, (_, i) => ({ type: "A" as const, name: "www.example.test", ttl: 5, data: `10.0.${i >> 8}.${i & 255}` })));
    const parts: Buffer[] = [raw.subarray(0, 34)];
    let off = 34;
    for (let i = 0; i < 200; i++) {
      off += 18; // the owner name "www.example.test" in full
      parts.push(Buffer.from([0xc0, 12]), raw.subarray(off, off + 14));
      off += 14;
    }
    const compressed = Buffer.concat(parts);
    expect(dnsPacket.decode(compressed).answers).toHaveLength(200);
    const out = dnsPacket.decode(keepAddressRecords(compressed, new Set(["10.0.0.1", "10.0.0.199"]))!);
    expect(out.answers?.map((a) => [a.name, a.data])).toEqual([["www.example.test", "10.0.0.1"], ["www.example.test", "10.0.0.199"]]);
  });

  it("returns null for a reply it cannot parse", () => {
    const r = reply([{ type: "A", name: "www.example.test", ttl: 5, data: "192.0.2.1" }]);
    expect(keepAddressRecords(r.subarray(0, r.length - 2), new Set())).toBeNull();
  });
});
