/**
 * DNS benchmark: our per-attachment DNS server against dnsmasq peers, all in one run, on the
 * loopback of a throwaway network namespace (the root namespace, its firewall and its lo are
 * never touched). Usage (root, after `npm run build`):
 * `node dist/bench/dns/dns-bench.js [--rounds 3] [--seconds 10] [--latency-seconds 3] [--cold-names 30000] [--out FILE]`.
 *
 * The outer process creates netns `nfdnsb<pid>` (own lo, two veth pairs for the eBPF filters) and
 * re-runs itself inside it with `ip netns exec … --inner` (bench/lib/netns-runner.ts); the inner
 * process mounts a private bpffs (ip netns exec gives it its own mount namespace), runs every
 * measurement and writes the JSON; the outer one always deletes the namespace afterwards.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { DnsPolicy, DomainRule } from "../../daemon/src/policy/policy.js";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { BenchDaemon } from "../daemon/daemon-process.js";
import { NETFENCED } from "../lib/binaries.js";
import { attachInterface, benchDnsYaml, detachAndStop } from "../lib/attached-daemon.js";
import { clamped, takeDnsperfSchedule, walkArgs } from "../lib/bench-args.js";
import { DnsNameFiles } from "../lib/dns-names.js";
import { loadAverage, machineRecord, writeJsonFile } from "../lib/run-record.js";
import { invocation, mountPrivateBpffs, runInNetns } from "../lib/netns-runner.js";
import { run } from "../lib/run-command.js";
import { Dnsmasq } from "./bench-processes.js";
import { measureDecision, median, tenKRulesPolicy } from "./decision-bench.js";
import { round, summarize, type RunSummary } from "./run-summary.js";
import { runDnsperf } from "./dnsperf.js";
import type { DnsperfOptions, DnsperfResult } from "./dnsperf.js";

interface Args {
  rounds: number;
  seconds: number;
  latencySeconds: number;
  coldNames: number;
  out: string;
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    rounds: 3, seconds: 10, latencySeconds: 3, coldNames: 30_000,
    out: path.join(projectRoot(), "bench", "results", "dns.json"),
  };
  walkArgs(argv, (a, value) => {
    if (a === "--cold-names") args.coldNames = clamped(value(), 1000, 60_000);
    else if (a === "--out") args.out = path.resolve(value());
    else return takeDnsperfSchedule(args, a, value);
    return true;
  });
  return args;
}

// ---------------------------------------------------------------------------------------------
// inner: measurements

const PORTS = { upstream: 15301, forwarder: 15302, forwarderCache: 15303, nftset: 15304, oursForward: 15305, oursAllowlist: 15306 };
const METRICS_PORT = 15310;

interface Files {
  dir: string;
  hosts: string;
  warm: string;
  /** cold[target][round]: names queried once each, every answer a new address */
  cold: Record<string, string[]>;
  coldLatency: Record<string, string>;
}

const COLD_TARGETS = ["dnsmasq-nftset", "netfence-allowlist"] as const;
const COLD_LATENCY_NAMES = 5000;

/** Hosts file for the authoritative upstream and dnsperf query files (distinct names per cold run). */
async function writeFiles(coldNames: number, rounds: number): Promise<Files> {
  const names = new DnsNameFiles(await mkdtemp(path.join(os.tmpdir(), "nf-dnsbench-")));
  const cold: Record<string, string[]> = {};
  const coldLatency: Record<string, string> = {};
  for (const target of COLD_TARGETS) {
    cold[target] = await names.coldRounds(target, rounds, coldNames);
    coldLatency[target] = await names.coldFile(`cold-latency-${target}.txt`, COLD_LATENCY_NAMES);
  }
  const { hosts, warm } = await names.finish();
  return { dir: names.dir, hosts, warm, cold, coldLatency };
}

/** The domain rules of a DNS policy as a `default_policy.dns` YAML block. */
function dnsPolicyYaml(p: DnsPolicy): string {
  const rule = (r: DomainRule): string => JSON.stringify(r.includeSubdomains ? `*.${r.domain}` : r.domain);
  return `dns: { mode: ${p.mode}, allow_domains: [${p.allowDomains.map(rule).join(", ")}], deny_domains: [${p.denyDomains.map(rule).join(", ")}] }`;
}

/**
 * One real daemon (`netfenced start`, the production binary: KernelFilter and its loader child,
 * the attachment manager, one DNS server per attachment) with one attachment on `ifname`, its
 * DNS server on 127.0.0.1:`port` in the bench namespace's private bpffs.
 */
async function startDaemon(dir: string, tag: string, port: number, policy: DnsPolicy, ifname: string, metricsPort: number | null): Promise<{ daemon: BenchDaemon; id: string }> {
  const daemon = new BenchDaemon({
    cli: NETFENCED,
    dir: await mkdtemp(path.join(dir, `${tag}-`)),
    pinRoot: `/sys/fs/bpf/netfence-dnsbench-${tag}-${process.pid}`,
    portMin: port,
    portMax: port,
    logLevel: "warn",
    dnsYaml: benchDnsYaml(port, PORTS.upstream),
    defaultPolicyYaml: `default_policy: { mode: allowlist, ${dnsPolicyYaml(policy)} }`,
    extraYaml: metricsPort === null ? "" : `metrics: { listen: "127.0.0.1:${metricsPort}" }`,
  });
  daemon.spawn();
  await daemon.waitReady(120_000);
  const res = await attachInterface(daemon, ifname);
  const got = Number(/:(\d+)$/.exec(res.dnsAddress)?.[1]);
  if (got !== port) throw new Error(`${tag}: DNS server on ${res.dnsAddress}, expected port ${port}`);
  return { daemon, id: res.id };
}

/** Prometheus text → sample name (with labels) → value. */
async function scrape(port: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** DNS outcome counters and learned addresses of one attachment, from the daemon's metrics. */
function dnsCounters(metrics: Map<string, number>, id: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of metrics) {
    const outcome = new RegExp(`^netfence_dns_queries\\{.*attachment="${id}".*outcome="([^"]+)"`).exec(k)?.[1];
    if (outcome !== undefined) out[outcome] = v;
    if (k.startsWith("netfence_dns_learned_addresses{") && k.includes(`"${id}"`)) out["learned_addresses"] = v;
  }
  return out;
}

interface Target {
  readonly name: string;
  readonly port: number;
  readonly note: string;
}

async function inner(args: Args): Promise<void> {
  await mountPrivateBpffs();
  const loadAtStart = loadAverage();
  const files = await writeFiles(args.coldNames, args.rounds);
  const children: Dnsmasq[] = [];
  const daemons: { daemon: BenchDaemon; id: string }[] = [];
  const results: Record<string, Record<string, RunSummary>> = {};
  const record = (target: string, phase: string, s: RunSummary): void => {
    (results[target] ??= {})[phase] = s;
    const pct = s.latency_p50 ? ` p50 ${s.latency_p50.value} µs p90 ${s.latency_p90!.value} µs p99 ${s.latency_p99!.value} µs (${s.samples} samples)` : "";
    console.log(`${target.padEnd(19)} ${phase.padEnd(13)} ${String(s.qps.value).padStart(7)} q/s [${s.qps.per_round.join(", ")}] avg ${s.latency_avg.value} µs${pct} lost ${s.queries_lost.join("/")} ${JSON.stringify(s.response_codes)}`);
  };
  const throughput = (port: number, dataFile: string, onePass = false): DnsperfOptions =>
    ({ server: "127.0.0.1", port, dataFile, seconds: args.seconds, onePass, clients: 4, outstanding: 100 });
  // Light, steady load (500 queries/s, ≤ 10 outstanding): per-query latency without queueing.
  const latency = (port: number, dataFile: string, onePass = false): DnsperfOptions =>
    ({ server: "127.0.0.1", port, dataFile, seconds: args.latencySeconds, onePass, clients: 1, outstanding: 10, maxQps: 500, verbose: true });

  try {
    console.log("decision cost against 10k rules …");
    const decision = measureDecision();
    console.log(`  cached ${round(decision.cached.cpuNs)} ns CPU (${round(decision.cached.wallNs)} ns wall)/decision, uncached suffix walk ${round(decision.uncached.cpuNs)} ns CPU (${round(decision.uncached.wallNs)} ns wall); compile ${round(decision.compileMs)} ms`);
    const insertPath =
      "the real daemon (netfenced start: attachment manager, KernelFilter, loader child): each allowed answer's addresses go through the learned-address writer into the attachment's pinned kernel map (TC program on a veth of the bench netns) before the reply leaves";

    // Every server runs for the whole benchmark (idle while another is measured), so rounds can
    // interleave the targets and a slow spell of the shared machine hits them all alike.
    const upstreamArg = `--server=127.0.0.1#${PORTS.upstream}`;
    children.push(await Dnsmasq.start(PORTS.upstream, [`--addn-hosts=${files.hosts}`, "--local-ttl=60"], path.join(files.dir, "upstream.log")));
    children.push(await Dnsmasq.start(PORTS.forwarder, [upstreamArg, "--cache-size=0"], path.join(files.dir, "fwd.log")));
    children.push(await Dnsmasq.start(PORTS.forwarderCache, [upstreamArg, "--cache-size=10000"], path.join(files.dir, "fwd-cache.log")));
    await run("nft", ["add", "table", "inet", "nfdnsbench"]);
    await run("nft", ["add", "set", "inet", "nfdnsbench", "allowed4", "{ type ipv4_addr; size 1048576; flags timeout; }"]);
    children.push(await Dnsmasq.start(PORTS.nftset, [upstreamArg, "--cache-size=0", "--nftset=/bench.test/4#inet#nfdnsbench#allowed4"], path.join(files.dir, "nftset.log")));
    const policy = tenKRulesPolicy();
    daemons.push(await startDaemon(files.dir, "fwd", PORTS.oursForward, { mode: "disabled", allowDomains: [], denyDomains: [], upstreams: [] }, "nfbh1", null));
    const ours = await startDaemon(files.dir, "allow", PORTS.oursAllowlist, policy, "nfbh0", METRICS_PORT);
    daemons.push(ours);

    const targets: Target[] = [
      { name: "upstream", port: PORTS.upstream, note: "authoritative dnsmasq answering from a hosts file (the bare upstream)" },
      { name: "dnsmasq-forward", port: PORTS.forwarder, note: "dnsmasq as a plain forwarder, cache off" },
      { name: "dnsmasq-cache", port: PORTS.forwarderCache, note: "dnsmasq forwarder with a 10k-entry cache (all hits after the first pass)" },
      { name: "dnsmasq-nftset", port: PORTS.nftset, note: "dnsmasq forwarder (cache off) adding every answer to an nftables set" },
      { name: "netfence-forward", port: PORTS.oursForward, note: "our server, DNS mode disabled (forward only, no decision, no insert)" },
      { name: "netfence-allowlist", port: PORTS.oursAllowlist, note: "our server, allowlist with 10k rules, addresses in the kernel map before each reply" },
    ];
    const portOf = (name: string): number => targets.find((t) => t.name === name)!.port;

    // Cold first (one pass over fresh names: every answer is a new address to add), then warm.
    const before = dnsCounters(await scrape(METRICS_PORT), ours.id);
    const cold: Record<string, DnsperfResult[]> = {};
    for (let r = 0; r < args.rounds; r++) {
      for (const t of COLD_TARGETS) (cold[t] ??= []).push(await runDnsperf(throughput(portOf(t), files.cold[t]![r]!, true)));
    }
    const afterCold = dnsCounters(await scrape(METRICS_PORT), ours.id);
    const coldLearned = (afterCold["learned_addresses"] ?? 0) - (before["learned_addresses"] ?? 0);
    for (const t of COLD_TARGETS) record(t, "cold", summarize(cold[t]!, `one pass over ${args.coldNames} fresh names per round: every answer a new address to add`));

    const warm: Record<string, DnsperfResult[]> = {};
    for (let r = 0; r < args.rounds; r++) {
      for (const t of targets) (warm[t.name] ??= []).push(await runDnsperf(throughput(t.port, files.warm)));
    }
    for (const t of targets) record(t.name, "warm", summarize(warm[t.name]!, `1000 names repeated; ${t.note}`));

    for (const t of targets) record(t.name, "latency", summarize([await runDnsperf(latency(t.port, files.warm))], "500 queries/s, warm names"));
    for (const t of COLD_TARGETS) {
      record(t, "latency-cold", summarize([await runDnsperf(latency(portOf(t), files.coldLatency[t]!, true))], "500 queries/s, every answer a new address to add first"));
    }

    const setList = await run("nft", ["list", "set", "inet", "nfdnsbench", "allowed4"]);
    const nftElements = (setList.match(/\d+\.\d+\.\d+\.\d+/g) ?? []).length;
    const ourStats = dnsCounters(await scrape(METRICS_PORT), ours.id);

    const get = (t: string, p: string): RunSummary => results[t]![p]!;
    const upstreamP50 = get("upstream", "latency").latency_p50!.value;
    const checks = [
      {
        name: "allowed-query QPS ≥ dnsmasq+nftset (warm names)",
        measured: get("netfence-allowlist", "warm").qps.value, reference: get("dnsmasq-nftset", "warm").qps.value, unit: "queries/s",
        met: get("netfence-allowlist", "warm").qps.value >= get("dnsmasq-nftset", "warm").qps.value,
      },
      {
        name: "allowed-query QPS ≥ dnsmasq+nftset (every answer a new address)",
        measured: get("netfence-allowlist", "cold").qps.value, reference: get("dnsmasq-nftset", "cold").qps.value, unit: "queries/s",
        met: get("netfence-allowlist", "cold").qps.value >= get("dnsmasq-nftset", "cold").qps.value,
      },
      {
        name: "added p50 latency over the bare upstream ≤ 100 µs (warm names)",
        measured: round(get("netfence-allowlist", "latency").latency_p50!.value - upstreamP50), limit: 100, unit: "µs",
        met: get("netfence-allowlist", "latency").latency_p50!.value - upstreamP50 <= 100,
      },
      {
        name: "added p50 latency over the bare upstream ≤ 100 µs (every answer inserted into the kernel map first)",
        measured: round(get("netfence-allowlist", "latency-cold").latency_p50!.value - upstreamP50), limit: 100, unit: "µs",
        met: get("netfence-allowlist", "latency-cold").latency_p50!.value - upstreamP50 <= 100,
      },
      { name: "cached name decision against 10k rules ≤ 1 µs (CPU time)", measured: round(decision.cached.cpuNs), limit: 1000, unit: "ns", met: decision.cached.cpuNs <= 1000 },
      { name: "cached name decision against 10k rules ≤ 1 µs (wall time)", measured: round(decision.cached.wallNs), limit: 1000, unit: "ns", met: decision.cached.wallNs <= 1000 },
      { name: "uncached name decision (suffix walk) against 10k rules ≤ 1 µs (CPU time)", measured: round(decision.uncached.cpuNs), limit: 1000, unit: "ns", met: decision.uncached.cpuNs <= 1000 },
    ];

    const output = {
      benchmark: "dns",
      finished_at: new Date().toISOString(),
      machine: await machineRecord(loadAtStart, "a shared 2-vCPU VM: other sessions' builds and kernel tests ran meanwhile; compare targets within this run, not with other machines", {
        dnsperf: (await run("dnsperf", ["-h"], true)).match(/Version ([\d.]+)/)?.[1] ?? "unknown",
        dnsmasq: (await run("dnsmasq", ["--version"], true)).match(/version ([\d.]+)/)?.[1] ?? "unknown",
      }),
      setup: {
        where: "every server on its own 127.0.0.1 port in a throwaway network namespace (own lo); dnsperf, the servers and the upstream share the machine's cores",
        upstream: "dnsmasq --no-resolv --addn-hosts (authoritative for *.bench.test, TTL 60 s)",
        throughput_runs: `dnsperf -c 4 -q 100 -T 1 -l ${args.seconds}, ${args.rounds} rounds interleaving the targets, median reported; cold runs add -n 1 over ${args.coldNames} fresh names`,
        latency_runs: `dnsperf -c 1 -q 10 -Q 500 -l ${args.latencySeconds} -v (each query's latency → percentiles)`,
        netfence_policy: "allowlist, 10,000 domain rules (*.bench.test plus 9,999 others), min TTL 300 s",
        insert_path: insertPath,
      },
      decision: {
        rules: decision.rules,
        cached_cpu_ns_per_decision: { value: round(decision.cached.cpuNs), unit: "ns", runs: decision.cached.cpuRunsNs.map((v) => round(v)) },
        cached_wall_ns_per_decision: { value: round(decision.cached.wallNs), unit: "ns", runs: decision.cached.wallRunsNs.map((v) => round(v)) },
        uncached_cpu_ns_per_decision: { value: round(decision.uncached.cpuNs), unit: "ns", runs: decision.uncached.cpuRunsNs.map((v) => round(v)) },
        uncached_wall_ns_per_decision: { value: round(decision.uncached.wallNs), unit: "ns", runs: decision.uncached.wallRunsNs.map((v) => round(v)) },
        compile_10k_rules: { value: round(decision.compileMs, 2), unit: "ms" },
        note: "cached = nameAllowed(policy, name) as the server calls it (compiled rules and verdicts cached per policy object); uncached = the suffix walk over the compiled Map; median of 5 runs of 2M decisions over 1024 names (allowed, deep, denied, unlisted); CPU time = process.cpuUsage (all of the process's threads, so GC helpers count too), wall time includes preemption by other load",
      },
      runs: results,
      inserts: {
        cold_runs_learned_addresses: coldLearned,
        netfence_allowlist_dns_counters: ourStats,
        nftset_elements_after_runs: nftElements,
      },
      targets: checks,
    };
    await writeJsonFile(args.out, output);
    console.log(`\nwrote ${args.out}`);
    for (const t of checks) console.log(`${t.met ? "MET    " : "NOT MET"} ${t.name}: ${t.measured} ${t.unit}`);
  } finally {
    for (const d of daemons) await detachAndStop(d.daemon, d.id);
    for (const c of children) await c.stop().catch(() => undefined);
    await run("nft", ["delete", "table", "inet", "nfdnsbench"], true);
    await rm(files.dir, { recursive: true, force: true });
  }
}

const inv = invocation(process.argv.slice(2));
const args = parseArgs(inv.options);
if (inv.inner) await inner(args);
else {
  await runInNetns({
    script: import.meta.url, prefix: "nfdnsb", rootError: "the DNS benchmark needs root (network namespace, nftables, eBPF)",
    veths: [["nfbh0", "nfbw0"], ["nfbh1", "nfbw1"]],
    address: { cidr: "10.253.77.1/30", dev: "nfbh0" },
  }, inv.options);
}
