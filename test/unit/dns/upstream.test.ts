import { afterEach, beforeEach, describe, expect, it } from "vitest";
import dnsPacket from "dns-packet";
import { UdpUpstream, UpstreamPool, forwardQuery, tcpQuery } from "../../../daemon/src/dns/upstream.js";
import { parseUpstreamAddress } from "../../../daemon/src/dns/upstream.js";
import { FakeUpstream, queryBytes } from "./helpers/fake-dns.js";

let upstream: FakeUpstream;
const closers: Array<() => void> = [];

beforeEach(async () => {
  upstream = await FakeUpstream.start();
});

afterEach(async () => {
  for (const close of closers.splice(0)) close();
  await upstream.close();
});

function udpUpstream(options = { timeoutMs: 1000, maxInFlight: 4096 }): UdpUpstream {
  const u = new UdpUpstream(parseUpstreamAddress(upstream.address), options);
  closers.push(() => u.close());
  return u;
}

describe("parseUpstreamAddress", () => {
  it("parses IPv4 and IPv6 with and without a port", () => {
    expect(parseUpstreamAddress("10.0.0.1")).toEqual({ host: "10.0.0.1", port: 53, family: 4, key: "10.0.0.1:53" });
    expect(parseUpstreamAddress("10.0.0.1:5353").port).toBe(5353);
    expect(parseUpstreamAddress("[::1]:5353")).toEqual({ host: "::1", port: 5353, family: 6, key: "[::1]:5353" });
    expect(parseUpstreamAddress("2001:db8:0::1")).toMatchObject({ host: "2001:db8::1", port: 53, family: 6 });
  });

  it.each(["", "dns.google:53", "10.0.0.1:0", "10.0.0.1:70000", "10.0.0.1:5x", "[::1]:", "300.1.1.1"])("rejects %j", (text) => {
    expect(() => parseUpstreamAddress(text)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });
});

describe("UdpUpstream", () => {
  it("remaps ids on one shared socket and gives every reply back its client id", async () => {
    const u = udpUpstream({ timeoutMs: 3000, maxInFlight: 4096 });
    upstream.behaviour = (q) => ({ kind: "answer", answers: [{ type: "TXT", name: q.name, ttl: 1, data: q.name }] });
    // 100 concurrent queries that all carry the same client id: only remapping keeps them apart
    // (100: a burst that fits the default 208 KiB socket buffers on a loaded machine)
    const names = Array.from({ length: 100 }, (_, i) => `n${i}.test`);
    const replies = await Promise.all(names.map((n) => u.query(queryBytes(n, "TXT", 7))));
    replies.forEach((reply, i) => {
      const packet = dnsPacket.decode(reply);
      expect(packet.id).toBe(7);
      expect(packet.questions?.[0]?.name).toBe(names[i]);
      expect(String((packet.answers?.[0]?.data as Buffer[])[0])).toBe(names[i]);
    });
    expect(new Set(upstream.received.map((r) => r.port)).size).toBe(1);
    expect(new Set(upstream.received.map((r) => r.id)).size).toBe(100);
    expect(u.pending).toBe(0);
  });

  it("times out with DEADLINE_EXCEEDED and forgets the query", async () => {
    const u = udpUpstream({ timeoutMs: 100, maxInFlight: 10 });
    upstream.behaviour = () => ({ kind: "silent" });
    await expect(u.query(queryBytes("slow.test"))).rejects.toMatchObject({ code: "DEADLINE_EXCEEDED" });
    expect(u.pending).toBe(0);
  });

  it("bounds the queries in flight", async () => {
    const u = udpUpstream({ timeoutMs: 200, maxInFlight: 2 });
    upstream.behaviour = () => ({ kind: "silent" });
    const first = u.query(queryBytes("a.test"));
    const second = u.query(queryBytes("b.test"));
    await expect(u.query(queryBytes("c.test"))).rejects.toMatchObject({ code: "RESOURCE_EXHAUSTED" });
    await expect(first).rejects.toMatchObject({ code: "DEADLINE_EXCEEDED" });
    await expect(second).rejects.toMatchObject({ code: "DEADLINE_EXCEEDED" });
  });

  it("ignores a reply whose question does not match (a spoof) and keeps waiting", async () => {
    const u = udpUpstream({ timeoutMs: 150, maxInFlight: 10 });
    // answer with the right id but another name
    upstream.udp.removeAllListeners("message");
    upstream.udp.on("message", (msg, rinfo) => {
      const q = dnsPacket.decode(msg);
      const spoof = dnsPacket.encode({ type: "response", id: q.id, questions: [{ type: "A", name: "other.test" }], answers: [] });
      upstream.udp.send(spoof, rinfo.port, rinfo.address);
    });
    await expect(u.query(queryBytes("real.test"))).rejects.toMatchObject({ code: "DEADLINE_EXCEEDED" });
  });

  it("fails at once with UNAVAILABLE when nothing listens on the upstream port (connected socket)", async () => {
    const dead = await FakeUpstream.start();
    const address = parseUpstreamAddress(dead.address);
    await dead.close();
    const u = new UdpUpstream(address, { timeoutMs: 30_000, maxInFlight: 10 });
    closers.push(() => u.close());
    await expect(u.query(queryBytes("a.test"))).rejects.toMatchObject({ code: "UNAVAILABLE" });
    // and the upstream recovers with a new socket for the next query
    await expect(u.query(queryBytes("b.test"))).rejects.toMatchObject({ code: "UNAVAILABLE" });
  });

  it("rejects queries after close", async () => {
    const u = udpUpstream();
    u.close();
    await expect(u.query(queryBytes("a.test"))).rejects.toMatchObject({ code: "UNAVAILABLE" });
  });
});

describe("tcpQuery and forwardQuery", () => {
  it("asks over TCP", async () => {
    const reply = await tcpQuery(parseUpstreamAddress(upstream.address), queryBytes("t.test", "A", 99), 1000);
    const packet = dnsPacket.decode(reply);
    expect(packet.id).toBe(99);
    expect(packet.answers?.[0]?.data).toBe("192.0.2.1");
    expect(upstream.received[0]?.transport).toBe("tcp");
  });

  it("falls back to TCP on a truncated UDP reply only when asked to", async () => {
    upstream.behaviour = (q) => ({ kind: "truncate-udp", answers: [{ type: "A", name: q.name, ttl: 1, data: "192.0.2.9" }] });
    const u = udpUpstream();
    const viaUdp = dnsPacket.decode(await forwardQuery([u], queryBytes("x.test"), false, 1000));
    expect(viaUdp.flag_tc).toBe(true);
    const viaTcp = dnsPacket.decode(await forwardQuery([u], queryBytes("x.test"), true, 1000));
    expect(viaTcp.answers?.[0]?.data).toBe("192.0.2.9");
  });

  it("fails with UNAVAILABLE when no upstream is configured", async () => {
    await expect(forwardQuery([], queryBytes("x.test"), false, 100)).rejects.toMatchObject({ code: "UNAVAILABLE" });
  });
});

describe("UpstreamPool", () => {
  it("shares one upstream per address and closes it with the last release", async () => {
    const pool = new UpstreamPool({ timeoutMs: 500, maxInFlight: 10 });
    const address = parseUpstreamAddress(upstream.address);
    const a = pool.acquire(address);
    const b = pool.acquire(parseUpstreamAddress(upstream.address));
    expect(a).toBe(b);
    pool.release(address);
    await expect(a.query(queryBytes("still.test"))).resolves.toBeInstanceOf(Buffer);
    pool.release(address);
    expect(pool.size).toBe(0);
    await expect(a.query(queryBytes("gone.test"))).rejects.toMatchObject({ code: "UNAVAILABLE" });
  });
});
