import { afterEach, beforeEach, describe, expect, it } from "vitest";
import dnsPacket from "dns-packet";
import type { Packet } from "dns-packet";
import { AttachmentDnsServer } from "../../../daemon/src/dns/dns-server.js";
import type { DnsProxy, DnsProxyAnswer } from "../../../daemon/src/dns/dns-proxy.js";
import type { DnsPolicy } from "../../../daemon/src/policy/policy.js";
import {
  FakeUpstream, RecordingAllower, dnsPolicy, framed, queryBytes, rcodeOf, silentLogger, tcpExchange, udpExchange, udpQuery,
} from "./helpers/fake-dns.js";

const REFUSED = 5;
const SERVFAIL = 2;
const FORMERR = 1;

let upstream: FakeUpstream;
let allower: RecordingAllower;
let policy: DnsPolicy;
const servers: AttachmentDnsServer[] = [];
const extraUpstreams: FakeUpstream[] = [];

async function startServer(extra: Partial<Parameters<typeof AttachmentDnsServer.start>[0]> = {}): Promise<AttachmentDnsServer> {
  const server = await AttachmentDnsServer.start({
    attachmentId: "att-1",
    listen: { host: "127.0.0.1", port: 0 },
    getPolicy: () => policy,
    defaultUpstreams: [upstream.address],
    learned: allower,
    logger: silentLogger,
    upstreamTimeoutMs: 300,
    ...extra,
  });
  servers.push(server);
  return server;
}

/** Sends a query and records "reply <name>" in the allower's log the moment the reply arrives. */
async function ask(server: AttachmentDnsServer, name: string, type: "A" | "AAAA" | "TXT" = "A"): Promise<Packet> {
  const reply = await udpQuery(server.address, name, type);
  allower.log.push(`reply ${name}`);
  return reply;
}

beforeEach(async () => {
  upstream = await FakeUpstream.start();
  allower = new RecordingAllower();
  policy = dnsPolicy("allowlist", ["*.allowed.test"], ["blocked.allowed.test"]);
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
  await Promise.all(extraUpstreams.splice(0).map((u) => u.close()));
  await upstream.close();
});

describe("AttachmentDnsServer allowlist mode", () => {
  it("resolves an allowed name and inserts its addresses BEFORE the reply is sent", async () => {
    const server = await startServer();
    allower.delayMs = 80;
    const reply = await ask(server, "www.allowed.test");
    expect(reply.rcode).toBe("NOERROR");
    expect(reply.answers?.map((a) => a.data)).toEqual(["192.0.2.1"]);
    expect(allower.calls).toEqual([
      { attachmentId: "att-1", name: "www.allowed.test", addresses: [{ family: 4, address: "192.0.2.1" }], ttlSeconds: 300 },
    ]);
    expect(allower.log).toEqual(["insert-start www.allowed.test", "inserted www.allowed.test 192.0.2.1", "reply www.allowed.test"]);
    expect(server.stats()).toEqual({ allowed: 1n, blocked: 0n });
  });

  it("adds AAAA answers as IPv6 addresses", async () => {
    const server = await startServer();
    const reply = await ask(server, "v6.allowed.test", "AAAA");
    expect(reply.answers?.[0]?.data).toBe("2001:db8::1");
    expect(allower.calls[0]?.addresses).toEqual([{ family: 6, address: "2001:db8::1" }]);
  });

  it("refuses unlisted and denied names and never sends them upstream", async () => {
    const server = await startServer();
    for (const name of ["evil.test", "blocked.allowed.test", "secret-data.exfil.example"]) {
      const reply = await ask(server, name);
      expect(reply.rcode).toBe("REFUSED");
      expect(reply.answers ?? []).toEqual([]);
    }
    // a later allowed query proves the upstream path works while the refused ones never got there
    await ask(server, "ok.allowed.test");
    expect(upstream.names()).toEqual(["ok.allowed.test"]);
    expect(server.stats()).toEqual({ allowed: 1n, blocked: 3n });
    expect(allower.calls.map((c) => c.name)).toEqual(["ok.allowed.test"]);
  });

  it("compares names case-insensitively and ignores a trailing dot", async () => {
    const server = await startServer();
    expect((await ask(server, "WWW.Allowed.TEST.")).rcode).toBe("NOERROR");
    expect((await ask(server, "BLOCKED.allowed.test")).rcode).toBe("REFUSED");
    expect(allower.calls.map((c) => c.name)).toEqual(["www.allowed.test"]);
  });

  it("refuses names with bytes no rule can describe (dots or spaces inside a label)", async () => {
    const server = await startServer();
    const raw = Buffer.from(queryBytes("axallowed.test"));
    // labels "axallowed","test" → "a.allowed","test": joined it reads like a.allowed.test
    expect(raw[14]).toBe(0x78);
    raw[14] = 0x2e;
    const reply = await udpExchange(server.address, raw);
    expect(reply).not.toBeNull();
    expect(rcodeOf(reply!)).toBe(REFUSED);
    expect(upstream.received).toEqual([]);
  });

  it("passes non-address answers through without inserting", async () => {
    const server = await startServer();
    upstream.behaviour = (q) => ({ kind: "answer", answers: [{ type: "TXT", name: q.name, ttl: 60, data: "hello" }] });
    const reply = await ask(server, "txt.allowed.test", "TXT");
    expect(reply.rcode).toBe("NOERROR");
    expect(allower.calls).toEqual([]);
  });

  it("passes an upstream NXDOMAIN through", async () => {
    const server = await startServer();
    upstream.behaviour = () => ({ kind: "rcode", rcode: 3 });
    expect((await ask(server, "nope.allowed.test")).rcode).toBe("NXDOMAIN");
    expect(allower.calls).toEqual([]);
  });
});

describe("CNAME rule", () => {
  it("adds the final addresses when every name of the chain is allowed", async () => {
    const server = await startServer();
    upstream.behaviour = (q) => ({
      kind: "answer",
      answers: [
        { type: "CNAME", name: q.name, ttl: 600, data: "edge.allowed.test" },
        { type: "CNAME", name: "edge.allowed.test", ttl: 500, data: "node7.allowed.test" },
        { type: "A", name: "node7.allowed.test", ttl: 900, data: "192.0.2.7" },
        { type: "A", name: "node7.allowed.test", ttl: 900, data: "192.0.2.8" },
      ],
    });
    await ask(server, "www.allowed.test");
    expect(allower.calls).toHaveLength(1);
    expect(allower.calls[0]!.name).toBe("www.allowed.test");
    expect(allower.calls[0]!.addresses.map((a) => a.address)).toEqual(["192.0.2.7", "192.0.2.8"]);
    expect(allower.calls[0]!.ttlSeconds).toBe(500); // the chain's minimum TTL, above the 300 s floor
  });

  it("opens the target's addresses when the chain leaves the allowed names (the query name decides), with the query name as provenance", async () => {
    const server = await startServer();
    upstream.behaviour = (q) => ({
      kind: "answer",
      answers: [
        { type: "CNAME", name: q.name, ttl: 60, data: "cdn.elsewhere.net" },
        { type: "A", name: "cdn.elsewhere.net", ttl: 60, data: "198.51.100.9" },
      ],
    });
    const reply = await ask(server, "www.allowed.test");
    expect(reply.rcode).toBe("NOERROR");
    expect(reply.answers?.map((a) => [a.type, a.data])).toEqual([["CNAME", "cdn.elsewhere.net"], ["A", "198.51.100.9"]]);
    expect(allower.calls.map((c) => [c.name, c.addresses.map((a) => a.address)])).toEqual([["www.allowed.test", ["198.51.100.9"]]]);
  });

  it("refuses the answer (REFUSED, nothing opened) when an explicit deny rule matches a name of the chain", async () => {
    policy = dnsPolicy("allowlist", ["a.test"], ["cdn.net"]);
    const server = await startServer();
    upstream.behaviour = (q) => ({
      kind: "answer",
      answers: [
        { type: "CNAME", name: q.name, ttl: 60, data: "cdn.net" },
        { type: "A", name: "cdn.net", ttl: 60, data: "198.51.100.10" },
      ],
    });
    const reply = await ask(server, "a.test");
    expect(reply.rcode).toBe("REFUSED");
    expect(reply.answers ?? []).toEqual([]);
    expect(allower.calls).toEqual([]);
    expect(server.detailedStats().outcomes["refused-cname"]).toBe(1);
    expect(server.stats().blocked).toBe(1n);
  });

  it("ignores address records of names outside the chain", async () => {
    const server = await startServer();
    upstream.behaviour = (q) => ({
      kind: "answer",
      answers: [
        { type: "A", name: "other.allowed.test", ttl: 60, data: "192.0.2.99" },
        { type: "A", name: q.name, ttl: 60, data: "192.0.2.1" },
      ],
    });
    await ask(server, "www.allowed.test");
    expect(allower.calls[0]!.addresses.map((a) => a.address)).toEqual(["192.0.2.1"]);
  });
});

describe("TTL and insert economy", () => {
  it("floors a TTL of 0 at the minimum and keeps longer TTLs", async () => {
    const server = await startServer({ minTtlSeconds: 120 });
    upstream.behaviour = (q) => ({ kind: "answer", answers: [{ type: "A", name: q.name, ttl: q.name.startsWith("zero") ? 0 : 7200, data: "192.0.2.3" }] });
    await ask(server, "zero.allowed.test");
    await ask(server, "long.allowed.test");
    expect(allower.calls.map((c) => [c.name, c.ttlSeconds])).toEqual([["zero.allowed.test", 120], ["long.allowed.test", 7200]]);
  });

  it("does not insert an address again while its entry has enough TTL left, until the policy changes", async () => {
    const server = await startServer();
    await ask(server, "www.allowed.test");
    await ask(server, "www.allowed.test");
    expect(allower.calls).toHaveLength(1);
    policy = dnsPolicy("allowlist", ["*.allowed.test"], []);
    await ask(server, "www.allowed.test");
    expect(allower.calls).toHaveLength(2);
  });

  it("answers SERVFAIL when the insert fails (never hands out a blocked address)", async () => {
    const server = await startServer();
    allower.failWith = new Error("map full");
    const reply = await ask(server, "www.allowed.test");
    expect(reply.rcode).toBe("SERVFAIL");
    expect(reply.answers ?? []).toEqual([]);
  });

  it("30 different names in parallel: every reply leaves only after its own addresses are in", async () => {
    const server = await startServer();
    allower.delayMs = 20;
    upstream.behaviour = (q) => ({ kind: "answer", answers: [{ type: "A", name: q.name, ttl: 60, data: `192.0.2.${Number(q.name.split(".")[0]!.slice(1)) + 1}` }] });
    const names = Array.from({ length: 30 }, (_, i) => `n${i}.allowed.test`);
    const replies = await Promise.all(names.map((n) => ask(server, n)));
    replies.forEach((r, i) => expect(r.answers?.[0]?.data).toBe(`192.0.2.${i + 1}`));
    for (const [i, name] of names.entries()) {
      const inserted = allower.log.indexOf(`inserted ${name} 192.0.2.${i + 1}`);
      expect(inserted).toBeGreaterThanOrEqual(0);
      expect(inserted).toBeLessThan(allower.log.indexOf(`reply ${name}`));
    }
  });

  it("holds concurrent replies until their shared insert is done", async () => {
    const server = await startServer();
    allower.delayMs = 60;
    const replies = await Promise.all(Array.from({ length: 8 }, () => ask(server, "same.allowed.test")));
    expect(replies.every((r) => r.rcode === "NOERROR")).toBe(true);
    const firstReply = allower.log.indexOf("reply same.allowed.test");
    const lastInsert = allower.log.lastIndexOf("inserted same.allowed.test 192.0.2.1");
    expect(lastInsert).toBeGreaterThanOrEqual(0);
    expect(lastInsert).toBeLessThan(firstReply);
    // concurrent queries for the same name share inserts instead of one per query
    expect(allower.calls.length).toBeLessThan(8);
  });
});

describe("other modes and upstreams", () => {
  it("disabled mode forwards every name and adds nothing", async () => {
    policy = dnsPolicy("disabled", [], ["*.test"]);
    const server = await startServer();
    expect((await ask(server, "anything.test")).rcode).toBe("NOERROR");
    expect(upstream.names()).toEqual(["anything.test"]);
    expect(allower.calls).toEqual([]);
    expect(server.stats().allowed).toBe(1n);
  });

  it("denylist mode resolves unlisted names and refuses denied ones", async () => {
    policy = dnsPolicy("denylist", ["ok.bad.test"], ["*.bad.test"]);
    const server = await startServer();
    expect((await ask(server, "fine.example")).rcode).toBe("NOERROR");
    expect((await ask(server, "x.bad.test")).rcode).toBe("REFUSED");
    expect((await ask(server, "ok.bad.test")).rcode).toBe("NOERROR");
    expect(upstream.names()).toEqual(["fine.example", "ok.bad.test"]);
    expect(allower.calls.map((c) => c.name)).toEqual(["fine.example", "ok.bad.test"]);
  });

  it("per-attachment upstreams override the default", async () => {
    const other = await FakeUpstream.start();
    extraUpstreams.push(other);
    policy = dnsPolicy("allowlist", ["*.allowed.test"], [], [other.address]);
    const server = await startServer();
    await ask(server, "www.allowed.test");
    expect(other.names()).toEqual(["www.allowed.test"]);
    expect(upstream.received).toEqual([]);
  });

  it("answers SERVFAIL when the upstream times out, and moves on to the next upstream", async () => {
    const server = await startServer();
    upstream.behaviour = () => ({ kind: "silent" });
    expect((await ask(server, "slow.allowed.test")).rcode).toBe("SERVFAIL");
    const other = await FakeUpstream.start();
    extraUpstreams.push(other);
    policy = dnsPolicy("allowlist", ["*.allowed.test"], [], [upstream.address, other.address]);
    expect((await ask(server, "slow.allowed.test")).rcode).toBe("NOERROR");
    expect(other.names()).toEqual(["slow.allowed.test"]);
  });

  it("answers SERVFAIL when the upstream is unreachable or misconfigured", async () => {
    const dead = await FakeUpstream.start();
    const deadAddress = dead.address;
    await dead.close();
    policy = dnsPolicy("allowlist", ["*.allowed.test"], [], [deadAddress]);
    const server = await startServer();
    expect((await ask(server, "www.allowed.test")).rcode).toBe("SERVFAIL");
    policy = dnsPolicy("allowlist", ["*.allowed.test"], [], ["not-an-address"]);
    expect((await ask(server, "www.allowed.test")).rcode).toBe("SERVFAIL");
  });
});

describe("bad packets", () => {
  it("answers FORMERR to garbage with a header, drops what has none, and keeps answering", async () => {
    const server = await startServer();
    const header = Buffer.from([0xbe, 0xef, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
    const garbageQuestion = Buffer.concat([header, Buffer.from([70, 0x61, 0x62])]); // label length 70, truncated
    const reply = await udpExchange(server.address, garbageQuestion);
    expect(reply).not.toBeNull();
    expect(reply!.readUInt16BE(0)).toBe(0xbeef);
    expect(rcodeOf(reply!)).toBe(FORMERR);

    const noQuestion = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(rcodeOf((await udpExchange(server.address, noQuestion))!)).toBe(FORMERR);

    const twoQuestions = Buffer.from(dnsPacket.encode({
      type: "query", id: 9, questions: [{ type: "A", name: "a.allowed.test" }, { type: "A", name: "b.allowed.test" }],
    }));
    expect(rcodeOf((await udpExchange(server.address, twoQuestions))!)).toBe(FORMERR);

    const truncated = queryBytes("www.allowed.test").subarray(0, 20);
    expect(rcodeOf((await udpExchange(server.address, truncated))!)).toBe(FORMERR);

    expect(await udpExchange(server.address, Buffer.from([1, 2, 3]), 300)).toBeNull();
    const response = Buffer.from(queryBytes("www.allowed.test"));
    response[2] = response[2]! | 0x80; // QR set: a response sent to us is dropped, never reflected
    expect(await udpExchange(server.address, response, 300)).toBeNull();

    const random = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 131 + 7) & 0xff));
    random[2] = 0x01; // make it look like a query
    const randomReply = await udpExchange(server.address, random);
    expect(randomReply === null || rcodeOf(randomReply) === FORMERR).toBe(true);

    expect((await ask(server, "www.allowed.test")).rcode).toBe("NOERROR");
    expect(upstream.names()).toEqual(["www.allowed.test"]);
  });
});

describe("TCP", () => {
  it("answers queries over TCP with 2-byte framing", async () => {
    const server = await startServer();
    const reply = await tcpExchange(server.address, framed(queryBytes("www.allowed.test")));
    expect(reply).not.toBe("closed");
    const packet = dnsPacket.decode(reply as Buffer);
    expect(packet.answers?.[0]?.data).toBe("192.0.2.1");
    expect(allower.calls).toHaveLength(1);
    const refused = await tcpExchange(server.address, framed(queryBytes("evil.test")));
    expect(rcodeOf(refused as Buffer)).toBe(REFUSED);
  });

  it("closes a connection that announces an oversized message", async () => {
    const server = await startServer({ tcp: { maxMessageBytes: 512 } });
    const result = await tcpExchange(server.address, Buffer.concat([Buffer.from([0x10, 0x00]), Buffer.alloc(100)]));
    expect(result).toBe("closed");
    expect((await ask(server, "www.allowed.test")).rcode).toBe("NOERROR");
  });

  it("answers pipelined queries on one connection, never more than maxPipelined at once", async () => {
    policy = dnsPolicy("proxy");
    let inFlight = 0;
    let maxInFlight = 0;
    const proxy: DnsProxy = {
      async queryDns(_id, domain) {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
        return { allow: true, addToFilter: false, ips: [`198.51.100.${Number(domain.split(".")[0]!.slice(1))}`], ttlSeconds: 5 };
      },
    };
    const server = await startServer({ proxy, tcp: { maxPipelined: 4 } });
    const frames = Buffer.concat(Array.from({ length: 40 }, (_, i) => framed(queryBytes(`q${i}.example`, "A", 1000 + i))));
    const [host, port] = server.address.split(":");
    const socket = (await import("node:net")).connect(Number(port), host);
    const replies = await new Promise<Map<number, string>>((resolve, reject) => {
      const got = new Map<number, string>();
      let buf = Buffer.alloc(0);
      socket.on("connect", () => socket.write(frames));
      socket.on("error", reject);
      socket.on("data", (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const p = dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0)));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
          got.set(p.id!, String(p.answers?.[0]?.data));
          if (got.size === 40) resolve(got);
        }
      });
    });
    socket.destroy();
    expect(replies.get(1000)).toBe("198.51.100.0");
    expect(replies.get(1039)).toBe("198.51.100.39");
    expect(maxInFlight).toBeGreaterThan(1);
    expect(maxInFlight).toBeLessThanOrEqual(4);
  });

  it("retries a truncated upstream answer over TCP for TCP clients", async () => {
    const server = await startServer();
    upstream.behaviour = (q) => ({ kind: "truncate-udp", answers: [{ type: "A", name: q.name, ttl: 60, data: "192.0.2.55" }] });
    const reply = await tcpExchange(server.address, framed(queryBytes("big.allowed.test")));
    const packet = dnsPacket.decode(reply as Buffer);
    expect(packet.answers?.[0]?.data).toBe("192.0.2.55");
    expect(upstream.received.map((r) => r.transport)).toEqual(["udp", "tcp"]);
    expect(allower.calls[0]?.addresses).toEqual([{ family: 4, address: "192.0.2.55" }]);
  });
});

describe("proxy mode", () => {
  class FakeProxy implements DnsProxy {
    readonly asked: string[] = [];
    constructor(private readonly decide: (domain: string, type: string) => DnsProxyAnswer | Error) {}
    async queryDns(attachmentId: string, domain: string, queryType: string): Promise<DnsProxyAnswer> {
      this.asked.push(`${attachmentId} ${domain} ${queryType}`);
      const answer = this.decide(domain, queryType);
      if (answer instanceof Error) throw answer;
      return answer;
    }
  }
  const proxyAnswer = (over: Partial<DnsProxyAnswer>): DnsProxyAnswer => ({ allow: true, addToFilter: true, ips: [], ttlSeconds: 0, ...over });

  it("refuses what the control plane denies without asking upstream", async () => {
    policy = dnsPolicy("proxy");
    const proxy = new FakeProxy(() => proxyAnswer({ allow: false }));
    const server = await startServer({ proxy });
    expect((await ask(server, "denied.example")).rcode).toBe("REFUSED");
    expect(proxy.asked).toEqual(["att-1 denied.example A"]);
    expect(upstream.received).toEqual([]);
    expect(server.stats().blocked).toBe(1n);
  });

  it("resolves upstream and inserts when allowed with add_to_filter", async () => {
    policy = dnsPolicy("proxy");
    const server = await startServer({ proxy: new FakeProxy(() => proxyAnswer({})) });
    const reply = await ask(server, "ok.example");
    expect(reply.answers?.[0]?.data).toBe("192.0.2.1");
    expect(allower.log.indexOf("inserted ok.example 192.0.2.1")).toBeLessThan(allower.log.indexOf("reply ok.example"));
  });

  it("does not insert when add_to_filter is false", async () => {
    policy = dnsPolicy("proxy");
    const server = await startServer({ proxy: new FakeProxy(() => proxyAnswer({ addToFilter: false })) });
    expect((await ask(server, "ok.example")).rcode).toBe("NOERROR");
    expect(upstream.names()).toEqual(["ok.example"]);
    expect(allower.calls).toEqual([]);
  });

  it("answers with the control plane's own IPs of the asked family, inserting them first", async () => {
    policy = dnsPolicy("proxy");
    const server = await startServer({ proxy: new FakeProxy(() => proxyAnswer({ ips: ["203.0.113.5", "2001:db8::5"], ttlSeconds: 42 })) });
    const a = await ask(server, "Pinned.Example");
    expect(a.answers?.map((r) => [r.type, r.data, r.ttl])).toEqual([["A", "203.0.113.5", 42]]);
    expect(a.id).toBeGreaterThanOrEqual(0);
    const aaaa = await ask(server, "pinned.example", "AAAA");
    expect(aaaa.answers?.map((r) => [r.type, r.data])).toEqual([["AAAA", "2001:db8::5"]]);
    expect(upstream.received).toEqual([]);
    expect(allower.calls.map((c) => [c.name, c.addresses, c.ttlSeconds])).toEqual([
      ["pinned.example", [{ family: 4, address: "203.0.113.5" }], 300],
      ["pinned.example", [{ family: 6, address: "2001:db8::5" }], 300],
    ]);
    expect(allower.log.indexOf("inserted pinned.example 203.0.113.5")).toBeLessThan(allower.log.indexOf("reply Pinned.Example"));
  });

  it("gives NODATA for other query types when the control plane answers with IPs", async () => {
    policy = dnsPolicy("proxy");
    const proxy = new FakeProxy(() => proxyAnswer({ ips: ["203.0.113.5"] }));
    const server = await startServer({ proxy });
    const txt = await ask(server, "pinned.example", "TXT");
    expect(txt.rcode).toBe("NOERROR");
    expect(txt.answers).toEqual([]);
    const raw = Buffer.from(queryBytes("pinned.example", "A", 77));
    raw.writeUInt16BE(65000, raw.length - 4); // an unassigned type number
    const reply = await udpExchange(server.address, raw);
    expect(rcodeOf(reply!)).toBe(0);
    expect(reply!.readUInt16BE(6)).toBe(0);
    expect(proxy.asked.at(-1)).toBe("att-1 pinned.example TYPE65000");
    expect(allower.calls).toEqual([]);
  });

  it("answers SERVFAIL when the control plane does not answer in time", async () => {
    policy = dnsPolicy("proxy");
    const hanging: DnsProxy = { queryDns: () => new Promise<DnsProxyAnswer>(() => undefined) };
    const server = await startServer({ proxy: hanging, proxyTimeoutMs: 100 });
    expect((await ask(server, "slow.example")).rcode).toBe("SERVFAIL");
    expect(upstream.received).toEqual([]);
  });

  it("answers SERVFAIL when the control plane cannot be asked", async () => {
    policy = dnsPolicy("proxy");
    const server = await startServer({ proxy: new FakeProxy(() => new Error("stream down")) });
    expect((await ask(server, "ok.example")).rcode).toBe("SERVFAIL");
    const noProxy = await startServer();
    expect((await ask(noProxy, "ok.example")).rcode).toBe("SERVFAIL");
    expect(upstream.received).toEqual([]);
  });
});

describe("lifecycle", () => {
  it("binds UDP and TCP on the same port and frees it on stop", async () => {
    const server = await startServer();
    const port = Number(server.address.split(":")[1]);
    await server.stop();
    servers.splice(servers.indexOf(server), 1);
    const again = await startServer({ listen: { host: "127.0.0.1", port } });
    expect(again.address).toBe(`127.0.0.1:${port}`);
    await expect(startServer({ listen: { host: "127.0.0.1", port } })).rejects.toMatchObject({ name: "NetfenceError", code: "ALREADY_EXISTS" });
  });

  it("serves IPv6 on [::1]", async () => {
    const server = await startServer({ listen: { host: "::1", port: 0 } });
    expect(server.address).toMatch(/^\[::1\]:\d+$/);
    const port = Number(server.address.slice(server.address.lastIndexOf(":") + 1));
    const dgram = await import("node:dgram");
    const socket = dgram.createSocket("udp6");
    const reply = await new Promise<Buffer>((resolve) => {
      socket.on("message", (m) => resolve(m));
      socket.send(queryBytes("v6client.allowed.test"), port, "::1");
    });
    socket.close();
    expect(dnsPacket.decode(reply).answers?.[0]?.data).toBe("192.0.2.1");
    const tcp = await tcpExchange(`::1:${port}`, framed(queryBytes("evil.test")));
    expect(rcodeOf(tcp as Buffer)).toBe(REFUSED);
  });

  it("rejects a listen host that is not an IP", async () => {
    await expect(startServer({ listen: { host: "localhost", port: 0 } })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});
