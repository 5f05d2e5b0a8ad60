import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../helpers/sandbox.js";
import { waitFor } from "../helpers/daemon-harness.js";
import { dig, Dnsmasq, E2eDaemon, splitHostPort } from "../helpers/e2e.js";
import { addBridgeHost, EventWatcher, type ExtraHost } from "../helpers/security.js";

// Issue 10 item 8 — one tenant exhausted shared resources. Per-attachment quotas now bound what a
// tenant's DNS server may consume; a tenant at its quotas gets REFUSED/SERVFAIL and events, and the
// other tenant keeps working. Real daemon, real kernel, dnsmasq upstream (local records, a zone
// forwarded to a server that never answers, 200-address names from a hosts file).
//
//   A  workload 10.a.b.2 (the attacker): quotas lowered by attach metadata (learned 600)
//   B  workload 10.a.b.3 (the victim), config defaults
//
// Wall times are never asserted here (the flood benchmark measures latency: bench/flood); what is
// asserted is what reaches the upstream (dnsmasq's log), what the kernel opens, and that B's
// queries all succeed.

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures");
const PORT = 7451;
const NAMES = 60; // big names, 200 distinct addresses each

interface Flood { sent: number; replies: number; rcodes: Record<string, number>; bytes: number }
interface Latency { ok: number; failed: number; rcodes: Record<string, number>; p50Ms: number | null; p99Ms: number | null }

describe("per-attachment DNS quotas (real daemon, real kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let upstream: Dnsmasq;
  let sink: ReturnType<Sandbox["spawn"]>;
  let daemon: E2eDaemon;
  let events: EventWatcher;
  let b: ExtraHost;
  let hostsDir: string;
  const ids: Record<string, string> = {};
  const ports: Record<string, number> = {};
  let dnsHost: string;

  const run = async <T>(ns: string, script: string, args: (string | number)[], timeoutMs = 60_000): Promise<T> => {
    const r = await sb.exec(ns, [process.execPath, path.join(FIXTURES, script), ...args.map(String)], { timeoutMs, allowFail: true });
    if (r.code !== 0) throw new Error(`${script} failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  const rssMb = (): number => {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${daemon.pid}/status`, "utf8"));
    return Number(m?.[1] ?? 0) / 1024;
  };

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfqu");
    net = await sb.network({ hostAddress: true });
    b = await addBridgeHost(sb, net, 3);
    await sb.echoServer(net.serverNs, PORT);
    const s = net.serverIp4;
    // A UDP sink that never answers: the upstream for *.sink.test (dnsmasq forwards to it).
    sink = sb.spawn(net.serverNs, [process.execPath, "-e", `require("node:dgram").createSocket("udp4").bind(5300, "${s[8]}")`]);
    hostsDir = mkdtempSync(path.join(os.tmpdir(), "nf-hosts-"));
    const lines: string[] = [];
    for (let n = 0; n < NAMES; n++) for (let i = 0; i < 200; i++) lines.push(`10.${64 + (n >> 4)}.${(n & 15) * 16 + (i >> 8)}.${i & 255} m${n}.big.test`);
    writeFileSync(path.join(hostsDir, "big.hosts"), `${lines.join("\n")}\n`);
    upstream = await Dnsmasq.start(sb, net.serverNs, s[9]!, [
      { name: "b.q.test", ipv4: s[1] },
      { name: "a.q.test", ipv4: s[2] },
      { name: "late.q.test", ipv4: s[0] },
    ], [`--server=/sink.test/${s[8]}#5300`, `--addn-hosts=${path.join(hostsDir, "big.hosts")}`, "--edns-packet-max=4096", "--dns-forward-max=10000"]);
    daemon = new E2eDaemon({
      pinRoot: await sb.pinRoot(),
      dns: { listenAddr: net.hostIp4!, upstream: `${s[9]}:53`, minTtl: "600s" },
      yaml: ["default_policy:", "  mode: allowlist", "  dns:", "    mode: denylist"].join("\n"),
      metrics: true,
    });
    await daemon.start();
    const a = await daemon.attachInterface(net.hostIf, { "netfence.workload-ips": net.workloadIp4, "netfence.dns.learned": "600", "netfence.dns.inflight": "64" });
    const bb = await daemon.attachInterface(b.hostIf, { "netfence.workload-ips": b.ip4 });
    ids["a"] = a.id;
    ids["b"] = bb.id;
    ({ host: dnsHost, port: ports["a"] } = splitHostPort(a.dnsAddress));
    ports["b"] = splitHostPort(bb.dnsAddress).port;
    events = await EventWatcher.start(daemon.socket);
  }, 120_000);

  afterAll(async () => {
    await events?.stop();
    for (const id of Object.values(ids)) if (daemon?.alive()) await daemon.cli("detach", "--id", id);
    await daemon?.cleanup();
    if (sink !== undefined && sink.exitCode === null) sink.kill("SIGKILL");
    await upstream?.stop();
    await sb?.cleanup();
    if (hostsDir) rmSync(hostsDir, { recursive: true, force: true });
  });

  it("4,000 q/s of never-answered names from A: A is held to its quotas (REFUSED over qps, SERVFAIL over in-flight), the upstream sees only A's in-flight share, B keeps resolving", async () => {
    const sinkBefore = upstream.queries().filter((q) => q.name.endsWith(".sink.test")).length;
    const [flood, victim] = await Promise.all([
      run<Flood>(net.workloadNs, "udp-flood.mjs", [dnsHost, ports["a"]!, 4000, 5000, "x{n}.sink.test"]),
      run<Latency>(b.ns, "dns-latency.mjs", [dnsHost, ports["b"]!, 5000, 5, "b.q.test"]),
    ]);
    expect(flood.sent).toBeGreaterThan(15_000);
    // Over the qps quota (1000/s, burst 1 s): REFUSED at once.
    expect(flood.rcodes["5"]).toBeGreaterThan(flood.sent / 2);
    // Over the in-flight quota (64): SERVFAIL at once; those admitted time out (SERVFAIL after 2 s).
    expect(flood.rcodes["2"]).toBeGreaterThan(0);
    // The far side: at most 64 in flight per 2 s upstream timeout over ~6.5 s reached the upstream.
    const forwarded = upstream.queries().filter((q) => q.name.endsWith(".sink.test")).length - sinkBefore;
    expect(forwarded).toBeGreaterThan(0);
    expect(forwarded).toBeLessThanOrEqual(64 * 5);
    // B: every query answered NOERROR (latency figures: bench/flood).
    expect(victim.failed).toBe(0);
    expect(victim.ok).toBeGreaterThan(50);
    expect(Object.keys(victim.rcodes)).toEqual(["0"]);
    const m = await daemon.metrics();
    expect(m.get(`netfence_dns_queries{attachment="${ids["a"]}",outcome="quota-qps"}`)).toBeGreaterThan(5000);
    expect(m.get(`netfence_dns_queries{attachment="${ids["a"]}",outcome="quota-inflight"}`)).toBeGreaterThan(0);
    expect(m.get(`netfence_dns_queries{attachment="${ids["b"]}",outcome="quota-qps"}`) ?? 0).toBe(0);
    await waitFor(() => events.events((e) => e.reason === "dns-quota-qps" && e.attachmentId === ids["a"]).length > 0, "a qps event", 5000);
    expect(events.events((e) => e.reason === "dns-quota-inflight" && e.attachmentId === ids["a"]).length).toBeGreaterThan(0);
    expect(events.events((e) => e.reason.startsWith("dns-quota") && e.attachmentId === ids["b"])).toEqual([]);
  });

  it("200-address answers at a high rate from A: at most 32 records per reply, learned addresses capped, then SERVFAIL; the daemon's memory stays bounded; B unaffected", async () => {
    const rssBefore = rssMb();
    // One answer first: what A's workload sees.
    const one = await sb.exec(net.workloadNs, ["dig", `@${dnsHost}`, "-p", String(ports["a"]), "+bufsize=4096", "+tries=1", "+time=3", "+noall", "+answer", "m0.big.test", "A"], { allowFail: true });
    expect(one.stdout.trim().split("\n").filter((l) => /\sIN\s+A\s/.test(l))).toHaveLength(32);
    const [flood, victim] = await Promise.all([
      run<Flood>(net.workloadNs, "udp-flood.mjs", [dnsHost, ports["a"]!, 300, 6000, "m{n}.big.test", "A", 4096, NAMES]),
      run<Latency>(b.ns, "dns-latency.mjs", [dnsHost, ports["b"]!, 6000, 5, "b.q.test"]),
    ]);
    expect(flood.sent).toBeGreaterThan(1000);
    // m0..m59 (32 records taken from each) fill the learned quota (600), then SERVFAIL.
    expect(flood.rcodes["2"]).toBeGreaterThan(0);
    const m = await daemon.metrics();
    expect(m.get(`netfence_dns_learned_addresses{attachment="${ids["a"]}"}`)).toBeLessThanOrEqual(600);
    expect(m.get(`netfence_dns_learned_addresses{attachment="${ids["a"]}"}`)).toBeGreaterThan(500);
    expect(m.get(`netfence_dns_queries{attachment="${ids["a"]}",outcome="quota-learned"}`)).toBeGreaterThan(0);
    expect(m.get(`netfence_dns_queries{attachment="${ids["a"]}",outcome="records-trimmed"}`)).toBeGreaterThan(0);
    expect(m.get('netfence_dns_learned_refused_total{reason="quota"}')).toBeGreaterThan(0);
    expect(victim.failed).toBe(0);
    expect(Object.keys(victim.rcodes)).toEqual(["0"]);
    const rssAfter = rssMb();
    expect(rssAfter - rssBefore).toBeLessThan(150);
    console.log(`[dns-quotas] B during A's 200-record flood: p50 ${victim.p50Ms?.toFixed(2)} ms, p99 ${victim.p99Ms?.toFixed(2)} ms; daemon RSS ${rssBefore.toFixed(0)} → ${rssAfter.toFixed(0)} MB`);
  });

  it("over the learned quota, a new address is neither answered nor opened for A — while B, asking the same name, gets it opened", async () => {
    const s0 = net.serverIp4[0]!;
    const forA = await dig(sb, net.workloadNs, dnsHost, ports["a"]!, "late.q.test", "A");
    expect(forA.status).toBe("SERVFAIL");
    expect(await probe(sb, net.workloadNs, "tcp", s0, { port: PORT })).toBe(false);
    await waitFor(() => events.events((e) => e.reason === "dns-quota-learned" && e.attachmentId === ids["a"] && e.dst === s0).length > 0, "a learned-quota event", 5000);
    const forB = await dig(sb, b.ns, dnsHost, ports["b"]!, "late.q.test", "A");
    expect(forB.answers.map((x) => x.data)).toEqual([s0]);
    expect(await probe(sb, b.ns, "tcp", s0, { port: PORT })).toBe(true);
  });
});
