import { afterEach, beforeEach, describe, expect, it } from "vitest";
import dnsPacket from "dns-packet";
import { AnswerCache, KERNEL_MARGIN_MS, ttlFields } from "../../../daemon/src/dns/answer-cache.js";
import { AttachmentDnsServer } from "../../../daemon/src/dns/dns-server.js";
import { readQuestion } from "../../../daemon/src/dns/dns-wire.js";
import type { DnsProxy } from "../../../daemon/src/dns/dns-proxy.js";
import type { LearnedItem, LearnOutcome } from "../../../daemon/src/dns/learned-sink.js";
import type { DnsPolicy } from "../../../daemon/src/policy/policy.js";
import { FakeUpstream, RecordingAllower, dnsPolicy, queryBytes, silentLogger, udpExchange, udpQuery } from "./helpers/fake-dns.js";

// The answer cache (dns/answer-cache.ts) through the real per-attachment server, against a fake
// upstream that records every query it gets and a recording learned-address sink; the pure
// cache with a fake clock for TTLs and the kernel-deadline cap.

/** A RecordingAllower whose epoch a test can move (a learned address removed) and that can refuse addresses. */
class Sink extends RecordingAllower {
  epochValue = 1;
  refuse = new Set<string>();
  override epoch(): number {
    return this.epochValue;
  }
  override async write(attachmentId: string, items: readonly LearnedItem[]): Promise<LearnOutcome> {
    await super.write(attachmentId, items);
    const refused = items.flatMap((i) => i.addresses.filter((a) => this.refuse.has(Array.from(a.addr).join("."))).map((address) => ({ name: i.name, address, reason: "deny-cidr" })));
    return { refused };
  }
}

let upstream: FakeUpstream;
let sink: Sink;
let policy: DnsPolicy;
const servers: AttachmentDnsServer[] = [];

async function startServer(extra: Partial<Parameters<typeof AttachmentDnsServer.start>[0]> = {}): Promise<AttachmentDnsServer> {
  const server = await AttachmentDnsServer.start({
    attachmentId: "att-c",
    listen: { host: "127.0.0.1", port: 0 },
    getPolicy: () => policy,
    defaultUpstreams: [upstream.address],
    learned: sink,
    logger: silentLogger,
    upstreamTimeoutMs: 300,
    ...extra,
  });
  servers.push(server);
  return server;
}

const asked = (name: string): number => upstream.names().filter((n) => n === name).length;

beforeEach(async () => {
  upstream = await FakeUpstream.start();
  sink = new Sink();
  sink.delayMs = 5;
  policy = dnsPolicy("allowlist", ["*.allowed.test"], ["blocked.allowed.test"]);
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
  await upstream.close();
});

describe("answer cache through the DNS server", () => {
  it("a repeated query is answered from the cache: one upstream query, one kernel write, the asker's id and spelling", async () => {
    const server = await startServer();
    const first = await udpQuery(server.address, "www.allowed.test");
    const q = queryBytes("WwW.AlLowed.TEST", "A", 4242);
    const raw = await udpExchange(server.address, q);
    const second = dnsPacket.decode(raw!);
    expect(first.answers?.map((a) => a.data)).toEqual(["192.0.2.1"]);
    expect(second.id).toBe(4242);
    expect(second.questions?.[0]?.name).toBe("WwW.AlLowed.TEST");
    expect(second.answers?.map((a) => [a.type, a.data])).toEqual([["A", "192.0.2.1"]]);
    expect(asked("www.allowed.test")).toBe(1);
    expect(sink.calls).toHaveLength(1);
    expect(server.detailedStats().outcomes.cached).toBe(1);
    expect(server.stats().allowed).toBe(2n); // a cached answer is still an allowed query
  });

  it("EDNS: queries with different COOKIE options share an entry; the cached reply's OPT carries no options; other additional records are never cached", async () => {
    upstream.behaviour = (q) => ({ kind: "answer", answers: [{ type: "A", name: q.name, ttl: 60, data: "192.0.2.8" }] });
    const server = await startServer();
    const withCookie = (cookie: string, id: number): Buffer =>
      dnsPacket.encode({
        type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name: "edns.allowed.test", class: "IN" }],
        additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232, flags: 0, options: [{ code: 10, data: Buffer.from(cookie, "hex") }] }],
      });
    await udpExchange(server.address, withCookie("0102030405060708", 1));
    const second = dnsPacket.decode((await udpExchange(server.address, withCookie("1112131415161718", 2)))!);
    expect(asked("edns.allowed.test")).toBe(1);
    expect(second.answers?.map((a) => a.data)).toEqual(["192.0.2.8"]);
    const opt = second.additionals?.find((a) => a.type === "OPT") as { options?: unknown[] } | undefined;
    expect(opt?.options ?? []).toEqual([]);
    // Without EDNS: another entry (the reply must not carry an OPT the asker did not send).
    const plain = await udpQuery(server.address, "edns.allowed.test");
    expect(plain.additionals ?? []).toEqual([]);
    expect(asked("edns.allowed.test")).toBe(2);
  });

  it("honours the TTL: lowered by the time spent in the cache, upstream again once it ran out", async () => {
    upstream.behaviour = (q) => ({ kind: "answer", answers: [{ type: "A", name: q.name, ttl: 2, data: "192.0.2.7" }] });
    const server = await startServer();
    await udpQuery(server.address, "short.allowed.test");
    await new Promise((r) => setTimeout(r, 1100));
    const cached = await udpQuery(server.address, "short.allowed.test");
    expect(asked("short.allowed.test")).toBe(1);
    expect(cached.answers?.[0]?.ttl).toBe(1);
    await new Promise((r) => setTimeout(r, 1000));
    await udpQuery(server.address, "short.allowed.test");
    expect(asked("short.allowed.test")).toBe(2);
  });

  it("a policy change empties it: a name denied after it was cached is REFUSED and nothing is sent upstream", async () => {
    const server = await startServer();
    await udpQuery(server.address, "later.allowed.test");
    await udpQuery(server.address, "later.allowed.test");
    expect(asked("later.allowed.test")).toBe(1);
    policy = dnsPolicy("allowlist", ["*.allowed.test"], ["later.allowed.test"]);
    expect((await udpQuery(server.address, "later.allowed.test")).rcode).toBe("REFUSED");
    expect(asked("later.allowed.test")).toBe(1);
  });

  it("a removed learned address (epoch moved: a deny CIDR, a re-check, expiry) empties it; the guard's refusal is honoured", async () => {
    const server = await startServer();
    await udpQuery(server.address, "moved.allowed.test");
    await udpQuery(server.address, "moved.allowed.test");
    expect(asked("moved.allowed.test")).toBe(1);
    sink.epochValue++;
    sink.refuse.add("192.0.2.1");
    const after = await udpQuery(server.address, "moved.allowed.test");
    expect(asked("moved.allowed.test")).toBe(2);
    expect(after.rcode).toBe("NOERROR");
    expect(after.answers ?? []).toEqual([]); // the refused address is taken out, also of what is cached now
    const again = await udpQuery(server.address, "moved.allowed.test");
    expect(again.answers ?? []).toEqual([]);
  });

  it("never caches what it did not allow: CNAME to a denied name, SERVFAIL, NXDOMAIN; proxy mode always asks the control plane", async () => {
    upstream.behaviour = (q) =>
      q.name === "alias.allowed.test"
        ? { kind: "answer", answers: [{ type: "CNAME", name: q.name, ttl: 60, data: "blocked.allowed.test" }, { type: "A", name: "blocked.allowed.test", ttl: 60, data: "192.0.2.66" }] }
        : q.name === "gone.allowed.test" ? { kind: "rcode", rcode: 3 } : { kind: "silent" };
    const server = await startServer();
    for (let i = 0; i < 2; i++) {
      expect((await udpQuery(server.address, "alias.allowed.test")).rcode).toBe("REFUSED");
      expect((await udpQuery(server.address, "gone.allowed.test")).rcode).toBe("NXDOMAIN");
      expect((await udpQuery(server.address, "dead.allowed.test")).rcode).toBe("SERVFAIL");
    }
    expect([asked("alias.allowed.test"), asked("gone.allowed.test")]).toEqual([2, 2]);
    expect(asked("dead.allowed.test")).toBeGreaterThanOrEqual(2);
    expect(server.detailedStats().outcomes.cached).toBe(0);

    let proxied = 0;
    const proxy: DnsProxy = { queryDns: async () => (proxied++, { allow: true, addToFilter: true, ips: ["192.0.2.9"], ttlSeconds: 60 }) };
    policy = { ...dnsPolicy("allowlist"), mode: "proxy" };
    const p = await startServer({ proxy, attachmentId: "att-p" });
    await udpQuery(p.address, "own.allowed.test");
    await udpQuery(p.address, "own.allowed.test");
    expect(proxied).toBe(2);
  });

  it("per attachment (tenant isolation), under the qps quota, and off with answer_cache 0", async () => {
    const a = await startServer();
    const b = await startServer({ attachmentId: "att-b" });
    await udpQuery(a.address, "shared.allowed.test");
    await udpQuery(b.address, "shared.allowed.test");
    expect(asked("shared.allowed.test")).toBe(2);

    const limited = await startServer({ attachmentId: "att-q", quotas: { qps: 2, inflight: 128, learned: 1000, answerRecords: 16, tcpConnections: 8, tcpPerSource: 4 } });
    const codes: string[] = [];
    for (let i = 0; i < 5; i++) codes.push((await udpQuery(limited.address, "quota.allowed.test")).rcode ?? "");
    expect(codes.filter((c) => c === "REFUSED").length).toBeGreaterThanOrEqual(2);

    const off = await startServer({ attachmentId: "att-off", answerCacheEntries: 0 });
    await udpQuery(off.address, "nocache.allowed.test");
    await udpQuery(off.address, "nocache.allowed.test");
    expect(asked("nocache.allowed.test")).toBe(2);
  });
});

describe("AnswerCache", () => {
  const reply = (ttls: number[]): Buffer =>
    dnsPacket.encode({
      type: "response", id: 1, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      questions: [{ type: "A", name: "x.test", class: "IN" }],
      answers: ttls.map((ttl, i) => ({ type: "A", name: "x.test", ttl, data: `192.0.2.${i + 1}` })),
      additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232, flags: 0, options: [] }],
    });

  it("reads every TTL field but OPT's; the smallest of the answer section", () => {
    const f = ttlFields(reply([30, 10, 20]))!;
    expect(f.ttls).toEqual([30, 10, 20]);
    expect(f.minTtl).toBe(10);
    expect(ttlFields(reply([5]).subarray(0, 40))).toBeNull();
  });

  it("expires at the answer's TTL or a margin before the kernel deadline, whichever is first; evicts the oldest when full", () => {
    let now = 1_000_000;
    const p = {};
    const cache = new AnswerCache(2, () => p, () => 7, () => now);
    const q = queryBytes("x.test");
    const question = readQuestion(q)!;
    const at = cache.generation();
    cache.store(q, question, false, reply([60]), at, now + 10_000);
    now += 10_000 - KERNEL_MARGIN_MS - 1;
    expect(cache.lookup(q, question, false)).not.toBeNull();
    now += 1;
    expect(cache.lookup(q, question, false)).toBeNull(); // the kernel entry would run out first

    cache.store(q, question, false, reply([3]), cache.generation(), Infinity);
    now += 2500;
    expect(dnsPacket.decode(cache.lookup(q, question, false)!).answers?.[0]?.ttl).toBe(1);
    now += 500;
    expect(cache.lookup(q, question, false)).toBeNull();

    // Stored under a generation that moved meanwhile: not stored. Eviction: oldest first.
    cache.store(q, question, false, reply([60]), { policy: {}, epoch: 7 }, Infinity);
    expect(cache.lookup(q, question, false)).toBeNull();
    const names = ["a.test", "b.test", "c.test"].map((n) => queryBytes(n));
    for (const n of names) cache.store(n, readQuestion(n)!, false, reply([60]), cache.generation(), Infinity);
    expect(cache.size).toBe(2);
    expect(cache.lookup(names[0]!, readQuestion(names[0]!)!, false)).toBeNull();
    expect(cache.lookup(names[2]!, readQuestion(names[2]!)!, false)).not.toBeNull();
    expect(cache.lookup(names[2]!, readQuestion(names[2]!)!, true)).toBeNull(); // keyed by transport
  });
});
