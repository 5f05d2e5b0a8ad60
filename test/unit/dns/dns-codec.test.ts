import { afterEach, describe, expect, it, vi } from "vitest";
import dnsPacket from "dns-packet";
import type { Answer } from "dns-packet";
import * as wire from "../../../daemon/src/dns/dns-wire.js";
import * as packet from "../../../daemon/src/dns/dns-wire-packet.js";
import { queryBytes } from "./helpers/fake-dns.js";

// The dns-packet variant of the two decoders (bench/dns/codec-bench.ts measures it against the
// hand-written one through the real daemon) must decide exactly like the hand-written one, or
// the comparison would not be of the same path; and the daemon must run the hand-written one
// unless the benchmark's environment variable says otherwise.

function response(answers: Answer[], name = "www.Example.com"): Buffer {
  return Buffer.from(dnsPacket.encode({ type: "response", id: 7, questions: [{ type: "A", name }], answers }));
}

describe("the dns-packet decoders agree with the hand-written ones", () => {
  it("questions: name, type, class, end; null for compressed or truncated ones", () => {
    for (const [name, type] of [["WWW.Example.COM", "AAAA"], ["_srv._tcp.a-b.example", "SRV"], ["x.example", "TXT"], ["", "A"]] as const) {
      const q = queryBytes(name, type);
      expect(packet.readQuestion(q)).toEqual(wire.readQuestion(q));
    }
    const q = Buffer.from(queryBytes("a.example"));
    expect(packet.readQuestion(q.subarray(0, q.length - 1))).toBeNull();
    expect(packet.readQuestion(Buffer.concat([q.subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]))).toBeNull();
  });

  it("answers: A, AAAA, CNAME chains, other types skipped, garbage is null", () => {
    const reply = response([
      { type: "CNAME", name: "www.Example.com", ttl: 30, data: "Edge.CDN.example" },
      { type: "A", name: "edge.cdn.example", ttl: 60, data: "192.0.2.7" },
      { type: "AAAA", name: "edge.cdn.example", ttl: 60, data: "2001:db8::7" },
      { type: "TXT", name: "edge.cdn.example", ttl: 60, data: "x" },
      { type: "A", name: "edge.cdn.example", ttl: 5, data: "198.51.100.1" },
    ]);
    const expected = wire.readAnswerRecords(reply);
    expect(expected).toHaveLength(4);
    expect(packet.readAnswerRecords(reply)).toEqual(expected);
    expect(packet.readAnswerRecords(reply.subarray(0, reply.length - 3))).toBeNull();
    expect(wire.readAnswerRecords(reply.subarray(0, reply.length - 3))).toBeNull();
  });
});

describe("dns-codec.ts: the codec the daemon runs", () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.resetModules();
  });

  it("is the hand-written one by default, dns-packet only under NETFENCE_BENCH_DNS_CODEC=dns-packet", async () => {
    vi.stubEnv("NETFENCE_BENCH_DNS_CODEC", "");
    vi.resetModules();
    const plain = await import("../../../daemon/src/dns/dns-codec.js");
    const wireNow = await import("../../../daemon/src/dns/dns-wire.js");
    expect(plain.readQuestion).toBe(wireNow.readQuestion);
    expect(plain.readAnswerRecords).toBe(wireNow.readAnswerRecords);

    vi.stubEnv("NETFENCE_BENCH_DNS_CODEC", "dns-packet");
    vi.resetModules();
    const bench = await import("../../../daemon/src/dns/dns-codec.js");
    const packetNow = await import("../../../daemon/src/dns/dns-wire-packet.js");
    expect(bench.readQuestion).toBe(packetNow.readQuestion);
    expect(bench.readAnswerRecords).toBe(packetNow.readAnswerRecords);
  });
});
