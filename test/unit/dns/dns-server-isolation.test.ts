import { afterEach, beforeEach, describe, expect, it } from "vitest";
import dgram from "node:dgram";
import net from "node:net";
import dnsPacket from "dns-packet";
import type { Answer } from "dns-packet";
import { AttachmentDnsServer } from "../../../daemon/src/dns/dns-server.js";
import { HostAddresses } from "../../../daemon/src/dns/host-addresses.js";
import { DEFAULT_DNS_QUOTAS, type DnsQuotas } from "../../../daemon/src/dns/dns-quotas.js";
import type { DnsEvent } from "../../../daemon/src/dns/dns-events.js";
import { formatAddr } from "@netfence/proto/parse";
import type { LearnedAddressSink, LearnedItem, LearnOutcome, RefusedAddress } from "../../../daemon/src/dns/learned-sink.js";
import type { DnsPolicy } from "../../../daemon/src/policy/policy.js";
import { FakeUpstream, dnsPolicy, framed, queryBytes, rcodeOf, silentLogger } from "./helpers/fake-dns.js";

// Tenant isolation (who may ask), per-attachment quotas and the query-type policy of one DNS
// server, against a fake upstream on loopback (issue 10 items 5, 8, 10). The same properties
// with real namespaces and a real daemon: test/security/dns-*.test.ts.

let upstream: FakeUpstream;
let policy: DnsPolicy;
const servers: AttachmentDnsServer[] = [];

/** Records calls; refuses the addresses in `refuse` with the given reason. */
class RefusingAllower implements LearnedAddressSink {
  readonly calls: { name: string; addresses: string[] }[] = [];
  refuse = new Map<string, string>();
  epoch(): number {
    return 0;
  }
  async write(_id: string, items: readonly LearnedItem[]): Promise<LearnOutcome> {
    const refused: RefusedAddress[] = [];
    for (const { name, addresses } of items) {
      const texts = addresses.map((a) => formatAddr(a.family, a.addr));
      this.calls.push({ name, addresses: texts });
      addresses.forEach((a, i) => {
        const reason = this.refuse.get(texts[i]!);
        if (reason !== undefined) refused.push({ name, address: a, reason });
      });
    }
    return { refused };
  }
}

let allower: RefusingAllower;
let events: DnsEvent[];

/** lo holds only 127.0.0.1/32 here, so 127.0.0.2 is neither on-link nor a host address. */
const narrowHost = () => new HostAddresses(() => ({ lo: [{ address: "127.0.0.1", netmask: "255.255.255.255", family: "IPv4", mac: "00:00:00:00:00:00", internal: true, cidr: "127.0.0.1/32" }] }));

async function startServer(over: Partial<Parameters<typeof AttachmentDnsServer.start>[0]> & { quotas?: Partial<DnsQuotas> } = {}): Promise<AttachmentDnsServer> {
  const server = await AttachmentDnsServer.start({
    attachmentId: "att-q",
    listen: { host: "127.0.0.1", port: 0 },
    getPolicy: () => policy,
    defaultUpstreams: [upstream.address],
    learned: allower,
    logger: silentLogger,
    upstreamTimeoutMs: 400,
    report: (e) => events.push(e),
    ...over,
    quotas: { ...DEFAULT_DNS_QUOTAS, ...over.quotas },
  });
  servers.push(server);
  return server;
}

/** One UDP query from `fromAddress`; null when no reply came within waitMs. */
async function askFrom(server: AttachmentDnsServer, fromAddress: string, name: string, type: "A" | "TXT" | "AAAA" = "A", waitMs = 1500): Promise<Buffer | null> {
  const port = Number(server.address.split(":")[1]);
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((r) => socket.bind(0, fromAddress, () => r()));
  try {
    return await new Promise<Buffer | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), waitMs);
      socket.on("message", (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      socket.send(queryBytes(name, type), port, "127.0.0.1");
    });
  } finally {
    socket.close();
  }
}

/** Opens a TCP connection from `fromAddress`; resolves "open" if it stays open 300 ms, "closed" otherwise. */
function connectFrom(server: AttachmentDnsServer, fromAddress: string): Promise<{ state: "open" | "closed"; socket: net.Socket }> {
  const port = Number(server.address.split(":")[1]);
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port, localAddress: fromAddress });
    let closed = false;
    socket.on("error", () => undefined);
    socket.on("close", () => (closed = true));
    socket.on("connect", () => setTimeout(() => resolve({ state: closed ? "closed" : "open", socket }), 300));
  });
}

beforeEach(async () => {
  upstream = await FakeUpstream.start();
  allower = new RefusingAllower();
  events = [];
  policy = dnsPolicy("allowlist", ["*.allowed.test"]);
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
  await upstream.close();
});

describe("tenant isolation: who may ask", () => {
  it("an interface attachment naming its workload answers only that address; others get no reply at all", async () => {
    const server = await startServer({ kind: "interface", workloadAddresses: ["127.0.0.2"] });
    expect(await askFrom(server, "127.0.0.1", "www.allowed.test", "A", 600)).toBeNull();
    const ok = await askFrom(server, "127.0.0.2", "www.allowed.test");
    expect(ok === null ? null : rcodeOf(ok)).toBe(0);
    expect(upstream.names()).toEqual(["www.allowed.test"]);
    expect(server.detailedStats().outcomes.foreign).toBe(1);
    expect(events).toEqual([expect.objectContaining({ reason: "dns-foreign-source", src: "127.0.0.1", dst: "127.0.0.1", protocol: 17 })]);
    // TCP from the foreign source is closed at once, before reading anything.
    expect((await connectFrom(server, "127.0.0.1")).state).toBe("closed");
    const mine = await connectFrom(server, "127.0.0.2");
    expect(mine.state).toBe("open");
    mine.socket.destroy();
  });

  it("without named addresses: the listen address's on-link prefix and the host's addresses", async () => {
    const server = await startServer({ kind: "interface", hostAddresses: narrowHost() });
    expect(await askFrom(server, "127.0.0.2", "www.allowed.test", "A", 600)).toBeNull();
    expect(await askFrom(server, "127.0.0.1", "www.allowed.test")).not.toBeNull();
    const wide = await startServer({ kind: "interface" }); // the real lo: 127.0.0.0/8 is on-link
    expect(await askFrom(wide, "127.0.0.2", "www.allowed.test")).not.toBeNull();
  });

  it("a cgroup attachment answers loopback and the host's addresses", async () => {
    const server = await startServer({ kind: "cgroup", hostAddresses: narrowHost() });
    expect(await askFrom(server, "127.0.0.9", "www.allowed.test")).not.toBeNull();
  });
});

describe("per-attachment quotas", () => {
  it("queries per second: over the bucket → REFUSED (never upstream) + event", async () => {
    const server = await startServer({ quotas: { qps: 5 } });
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => askFrom(server, "127.0.0.1", `q${i}.allowed.test`)));
    const rcodes = replies.map((r) => (r === null ? -1 : rcodeOf(r)));
    expect(rcodes.filter((c) => c === 0).length).toBeGreaterThanOrEqual(5);
    expect(rcodes.filter((c) => c === 5).length).toBeGreaterThanOrEqual(10);
    expect(rcodes.filter((c) => c !== 0 && c !== 5)).toEqual([]);
    expect(upstream.received.length).toBe(rcodes.filter((c) => c === 0).length);
    expect(server.detailedStats().outcomes["quota-qps"]).toBe(rcodes.filter((c) => c === 5).length);
    expect(events.some((e) => e.reason === "dns-quota-qps")).toBe(true);
  });

  it("upstream queries in flight: over → SERVFAIL at once + event; the upstream sees only the quota", async () => {
    upstream.behaviour = () => ({ kind: "silent" });
    const server = await startServer({ quotas: { inflight: 2 } });
    const started = Date.now();
    const replies = await Promise.all(Array.from({ length: 6 }, (_, i) => server.answer(queryBytes(`slow${i}.allowed.test`), false)));
    expect(replies.map((r) => rcodeOf(r!))).toEqual([2, 2, 2, 2, 2, 2]);
    expect(upstream.received.length).toBe(2);
    expect(server.detailedStats().outcomes["quota-inflight"]).toBe(4);
    expect(events.filter((e) => e.reason === "dns-quota-inflight")).toHaveLength(4);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300); // the two admitted ones waited for the timeout
  });

  it("answer records: at most answerRecords A/AAAA taken and left in the reply", async () => {
    upstream.behaviour = (q) => ({ kind: "answer", answers: Array.from({ length: 10 }, (_, i): Answer => ({ type: "A", name: q.name, ttl: 60, data: `192.0.2.${i + 1}` })) });
    const server = await startServer({ quotas: { answerRecords: 3 } });
    const reply = dnsPacket.decode((await server.answer(queryBytes("many.allowed.test"), false))!);
    expect(reply.answers?.map((a) => a.data)).toEqual(["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    expect(allower.calls).toEqual([{ name: "many.allowed.test", addresses: ["192.0.2.1", "192.0.2.2", "192.0.2.3"] }]);
    expect(server.detailedStats().outcomes["records-trimmed"]).toBe(7);
  });

  it("learned addresses over quota: SERVFAIL", async () => {
    allower.refuse.set("192.0.2.1", "quota");
    const server = await startServer();
    expect(rcodeOf((await server.answer(queryBytes("www.allowed.test"), false))!)).toBe(2);
    expect(server.detailedStats().outcomes["quota-learned"]).toBe(1);
  });

  it("TCP: per source and per attachment, connections over the quota are closed at once", async () => {
    const server = await startServer({ kind: "interface", quotas: { tcpPerSource: 2, tcpConnections: 3 } });
    const fromOne = await Promise.all(Array.from({ length: 5 }, () => connectFrom(server, "127.0.0.1")));
    expect(fromOne.map((c) => c.state).sort()).toEqual(["closed", "closed", "closed", "open", "open"]);
    const other = await connectFrom(server, "127.0.0.3");
    expect(other.state).toBe("open");
    const fourth = await connectFrom(server, "127.0.0.4");
    expect(fourth.state).toBe("closed"); // 3 open in total
    expect(events.filter((e) => e.reason === "dns-quota-tcp").map((e) => e.rule).sort()).toEqual(["tcp-connections", "tcp-per-source", "tcp-per-source", "tcp-per-source"]);
    // A legitimate query still works on an admitted connection.
    const open = fromOne.find((c) => c.state === "open")!.socket;
    const reply = await new Promise<Buffer>((resolve) => {
      open.once("data", (d: Buffer) => resolve(d.subarray(2)));
      open.write(framed(queryBytes("www.allowed.test")));
    });
    expect(rcodeOf(reply)).toBe(0);
    for (const c of [...fromOne, other, fourth]) c.socket.destroy();
  });
});

describe("addresses the data path refused leave the reply", () => {
  it("the workload only sees what it may reach (rebinding guard), and a reply with nothing left is still NOERROR", async () => {
    upstream.behaviour = (q) => ({
      kind: "answer",
      answers: [
        { type: "CNAME", name: q.name, ttl: 60, data: "edge.example.net" },
        { type: "A", name: "edge.example.net", ttl: 60, data: "169.254.169.254" },
        { type: "A", name: "edge.example.net", ttl: 60, data: "192.0.2.1" },
      ],
    });
    allower.refuse.set("169.254.169.254", "metadata");
    const server = await startServer();
    const reply = dnsPacket.decode((await server.answer(queryBytes("www.allowed.test"), false))!);
    expect(reply.rcode).toBe("NOERROR");
    expect(reply.answers?.map((a) => [a.type, a.data])).toEqual([["CNAME", "edge.example.net"], ["A", "192.0.2.1"]]);
    allower.refuse.set("192.0.2.1", "deny-cidr");
    const empty = dnsPacket.decode((await server.answer(queryBytes("two.allowed.test"), false))!);
    expect(empty.answers?.map((a) => a.type)).toEqual(["CNAME"]);
    expect(server.detailedStats().outcomes["addresses-refused"]).toBe(3);
  });
});

describe("query-type policy", () => {
  it("refused types get REFUSED and never reach the upstream; other types still work", async () => {
    const server = await startServer({ refuseTypes: [16, 255] });
    const hex = "6d792d7365637265742d646174612d30303031.allowed.test";
    expect(rcodeOf((await server.answer(queryBytes(hex, "TXT"), false))!)).toBe(5);
    expect(rcodeOf((await server.answer(queryBytes("x.allowed.test", "ANY"), false))!)).toBe(5);
    expect(rcodeOf((await server.answer(queryBytes("x.allowed.test", "A"), false))!)).toBe(0);
    expect(upstream.received.map((r) => r.type)).toEqual(["A"]);
    expect(server.detailedStats().outcomes["refused-type"]).toBe(2);
    expect(events.filter((e) => e.reason === "dns-query-type").map((e) => e.rule)).toEqual([`TXT ${hex}`, "ANY x.allowed.test"]);
  });
});
