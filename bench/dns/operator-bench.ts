/**
 * DNS on the operator's path against dnsmasq + nftset, in one run (issue 13): dnsperf with 10
 * clients cycling 1,000 allowed names, every allowed answer's address in the kernel before the
 * reply leaves. Usage (root, after `npm run build`):
 * `node dist/bench/dns/operator-bench.js [--rounds 3] [--seconds 8] [--cpu-prof DIR] [--out FILE]`.
 *
 * Targets, each a real server on its own 127.0.0.1 port of a throwaway namespace (`nfopb<pid>`, own
 * lo, one veth per daemon, a private bpffs; the outer process always deletes it), all running for
 * the whole benchmark and measured in interleaved rounds (order rotating):
 *
 *   netfence          `netfenced start` of this checkout, one attachment (Attach through the
 *                     DaemonService), allowlist `*.bench.test`, the answer cache at its default
 *   netfence-nocache  the same with `dns.answer_cache: 0` (every query upstream: the miss path)
 *   nftset            dnsmasq `--nftset` into an nftables set, cache off (the issue's baseline)
 *   nftset-cache      the same with dnsmasq's cache (10k entries; cached answers add nothing)
 *   forward           dnsmasq as a plain forwarder, cache off
 *
 * Upstream: an authoritative dnsmasq (hosts file, TTL 60 s). Per round and target: dnsperf
 * `-c 10 -q 100 -l S -v` over the 1,000 names (throughput and the per-query latency under that
 * load: p50/p99), and the server's CPU time per query (/proc; the daemon's loader child too).
 * `--cpu-prof DIR` runs the netfence daemons with `--cpu-prof` (profiles written at their exit);
 * `--node-arg ARG` (repeatable) passes more options to their node (e.g. `--import` of a probe).
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { BenchDaemon, procCpuMs } from "../daemon/daemon-process.js";
import { NETFENCED } from "../lib/binaries.js";
import { attachInterface, BENCH_TEST_ALLOWLIST_YAML, benchDnsYaml, detachAndStop } from "../lib/attached-daemon.js";
import { clamped, walkArgs } from "../lib/bench-args.js";
import { DnsNameFiles } from "../lib/dns-names.js";
import { loadAverage, machineRecord, writeJsonFile } from "../lib/run-record.js";
import { invocation, mountPrivateBpffs, requireWorkdir, runInNetns } from "../lib/netns-runner.js";
import { run } from "../lib/run-command.js";
import { Dnsmasq } from "./bench-processes.js";
import { median } from "./decision-bench.js";
import { latencyPercentiles, round } from "./run-summary.js";
import { runDnsperf } from "./dnsperf.js";

const UPSTREAM_PORT = 15511;
const PORTS = { netfence: 15512, "netfence-nocache": 15513, nftset: 15514, "nftset-cache": 15515, forward: 15516 } as const;
type TargetName = keyof typeof PORTS;
const IFACES = ["nfoph0", "nfoph1"] as const;
const CLIENTS = 10;
const OUTSTANDING = 100;

interface Args { rounds: number; seconds: number; cpuProf: string | null; nodeArgs: string[]; out: string }

function parseArgs(argv: string[]): Args {
  const args: Args = { rounds: 3, seconds: 8, cpuProf: null, nodeArgs: [], out: path.join(projectRoot(), "bench", "results", "dns-operator.json") };
  walkArgs(argv, (a, value) => {
    if (a === "--rounds") args.rounds = clamped(value(), 1, 9);
    else if (a === "--seconds") args.seconds = clamped(value(), 2, 30);
    else if (a === "--cpu-prof") args.cpuProf = path.resolve(value());
    else if (a === "--node-arg") args.nodeArgs.push(value());
    else if (a === "--out") args.out = path.resolve(value());
    else return false;
    return true;
  });
  return args;
}

interface Target { name: TargetName; pid: () => number; loaderPid: number | null }

async function startNetfence(dir: string, name: TargetName, iface: string, cacheYaml: string, cpuProf: string | null, nodeArgs: readonly string[]): Promise<{ daemon: BenchDaemon; id: string; target: Target }> {
  const port = PORTS[name];
  const daemon = new BenchDaemon({
    cli: NETFENCED,
    dir: await mkdtemp(path.join(dir, `${name}-`)),
    pinRoot: `/sys/fs/bpf/netfence-opbench-${name}-${process.pid}`,
    portMin: port,
    portMax: port,
    logLevel: "warn",
    dnsYaml: benchDnsYaml(port, UPSTREAM_PORT).replace(/ }$/, `${cacheYaml} }`),
    defaultPolicyYaml: BENCH_TEST_ALLOWLIST_YAML,
    nodeArgs: [...nodeArgs, ...(cpuProf === null ? [] : ["--cpu-prof", `--cpu-prof-dir=${cpuProf}`, `--cpu-prof-name=${name}.cpuprofile`])],
  });
  daemon.spawn();
  await daemon.waitReady(120_000);
  const res = await attachInterface(daemon, iface);
  if (!res.dnsAddress.endsWith(`:${port}`)) throw new Error(`${name}: DNS server on ${res.dnsAddress}, expected port ${port}`);
  const loader = Number((await run("pgrep", ["-P", String(daemon.pid)], true)).trim().split("\n")[0]);
  return { daemon, id: res.id, target: { name, pid: () => daemon.pid!, loaderPid: Number.isInteger(loader) && loader > 0 ? loader : null } };
}

interface Sample { qps: number; completed: number; lost: number; cpuUsPerQuery: number; loaderCpuUsPerQuery: number | null; latencies: number[]; rcodes: Record<string, number>; load: number }

async function inner(args: Args, dir: string): Promise<void> {
  await mountPrivateBpffs();
  const loadAtStart = loadAverage();
  const names = new DnsNameFiles(dir);
  const { hosts, warm } = await names.finish();
  const dnsmasqs: Dnsmasq[] = [];
  const daemons: { daemon: BenchDaemon; id: string }[] = [];
  try {
    const upstreamArg = `--server=127.0.0.1#${UPSTREAM_PORT}`;
    dnsmasqs.push(await Dnsmasq.start(UPSTREAM_PORT, [`--addn-hosts=${hosts}`, "--local-ttl=60"], path.join(dir, "upstream.log")));
    await run("nft", ["add", "table", "inet", "nfopbench"]);
    await run("nft", ["add", "set", "inet", "nfopbench", "allowed4", "{ type ipv4_addr; size 1048576; flags timeout; }"]);
    const nftset = "--nftset=/bench.test/4#inet#nfopbench#allowed4";
    const targets: Target[] = [];
    const dnsmasqTarget = async (name: TargetName, extra: string[]): Promise<void> => {
      const d = await Dnsmasq.start(PORTS[name], [upstreamArg, ...extra], path.join(dir, `${name}.log`));
      dnsmasqs.push(d);
      targets.push({ name, pid: () => d.pid, loaderPid: null });
    };
    await dnsmasqTarget("nftset", ["--cache-size=0", nftset]);
    await dnsmasqTarget("nftset-cache", ["--cache-size=10000", nftset]);
    await dnsmasqTarget("forward", ["--cache-size=0"]);
    for (const [i, [name, cache]] of ([["netfence", ""], ["netfence-nocache", ", answer_cache: 0"]] as const).entries()) {
      const started = await startNetfence(dir, name, IFACES[i]!, cache, args.cpuProf, args.nodeArgs);
      daemons.push(started);
      targets.push(started.target);
    }

    const samples: Partial<Record<TargetName, Sample[]>> = {};
    for (let r = 0; r < args.rounds; r++) {
      const order = targets.map((_, i) => targets[(i + r) % targets.length]!);
      for (const t of order) {
        const load = os.loadavg()[0]!;
        const cpu0 = procCpuMs(t.pid());
        const lcpu0 = t.loaderPid === null ? 0 : procCpuMs(t.loaderPid);
        const res = await runDnsperf({ server: "127.0.0.1", port: PORTS[t.name], dataFile: warm, seconds: args.seconds, clients: CLIENTS, outstanding: OUTSTANDING, verbose: true });
        const per = (ms: number): number => round((ms * 1000) / Math.max(1, res.completed), 2);
        const s: Sample = {
          qps: round(res.qps, 0), completed: res.completed, lost: res.lost, latencies: res.latenciesUs, rcodes: res.rcodes, load: round(load, 2),
          cpuUsPerQuery: per(procCpuMs(t.pid()) - cpu0),
          loaderCpuUsPerQuery: t.loaderPid === null ? null : per(procCpuMs(t.loaderPid) - lcpu0),
        };
        (samples[t.name] ??= []).push(s);
        const l = latencyPercentiles(s.latencies);
        console.log(`round ${r + 1} ${t.name.padEnd(17)} ${String(s.qps).padStart(6)} q/s p50 ${l.p50.value} p99 ${l.p99.value} µs CPU ${s.cpuUsPerQuery}${s.loaderCpuUsPerQuery === null ? "" : `+${s.loaderCpuUsPerQuery}`} µs/q lost ${s.lost} load ${s.load}`);
      }
    }

    const results: Record<string, unknown> = {};
    const summary = (name: TargetName) => {
      const s = samples[name]!;
      const l = latencyPercentiles(s.flatMap((x) => x.latencies));
      const perRound = s.map((x) => latencyPercentiles(x.latencies));
      return {
        qps: { value: median(s.map((x) => x.qps)), unit: "queries/s", per_round: s.map((x) => x.qps) },
        latency_p50: { ...l.p50, per_round: perRound.map((p) => p.p50.value) },
        latency_p90: l.p90,
        latency_p99: { ...l.p99, per_round: perRound.map((p) => p.p99.value) },
        samples: l.samples,
        cpu_per_query: { value: median(s.map((x) => x.cpuUsPerQuery)), unit: "µs", per_round: s.map((x) => x.cpuUsPerQuery) },
        loader_cpu_per_query: s[0]!.loaderCpuUsPerQuery === null ? null : { value: median(s.map((x) => x.loaderCpuUsPerQuery!)), unit: "µs", per_round: s.map((x) => x.loaderCpuUsPerQuery) },
        lost: s.map((x) => x.lost),
        response_codes: s.map((x) => x.rcodes),
        load_1min_before_each_round: s.map((x) => x.load),
      };
    };
    const sums = Object.fromEntries(targets.map((t) => [t.name, summary(t.name)])) as Record<TargetName, ReturnType<typeof summary>>;
    for (const t of targets) results[t.name] = sums[t.name];
    const ratio = (a: number, b: number): number => round(a / b, 2);
    const checks = [
      { name: "q/s ≥ 1.5× dnsmasq+nftset (cache off, the issue's baseline)", measured: ratio(sums.netfence.qps.value, sums.nftset.qps.value), limit: 1.5, met: sums.netfence.qps.value >= 1.5 * sums.nftset.qps.value },
      { name: "p99 ≤ dnsmasq+nftset's p99 (cache off)", measured: sums.netfence.latency_p99.value, reference: sums.nftset.latency_p99.value, unit: "µs", met: sums.netfence.latency_p99.value <= sums.nftset.latency_p99.value },
      { name: "q/s ≥ 1.5× dnsmasq+nftset with its cache", measured: ratio(sums.netfence.qps.value, sums["nftset-cache"].qps.value), limit: 1.5, met: sums.netfence.qps.value >= 1.5 * sums["nftset-cache"].qps.value },
      { name: "p99 ≤ dnsmasq+nftset-with-cache's p99", measured: sums.netfence.latency_p99.value, reference: sums["nftset-cache"].latency_p99.value, unit: "µs", met: sums.netfence.latency_p99.value <= sums["nftset-cache"].latency_p99.value },
      { name: "cache off: q/s ≥ 1.5× dnsmasq+nftset (cache off)", measured: ratio(sums["netfence-nocache"].qps.value, sums.nftset.qps.value), limit: 1.5, met: sums["netfence-nocache"].qps.value >= 1.5 * sums.nftset.qps.value },
      { name: "cache off: p99 ≤ dnsmasq+nftset's p99 (cache off)", measured: sums["netfence-nocache"].latency_p99.value, reference: sums.nftset.latency_p99.value, unit: "µs", met: sums["netfence-nocache"].latency_p99.value <= sums.nftset.latency_p99.value },
    ];
    const setList = await run("nft", ["list", "set", "inet", "nfopbench", "allowed4"]);
    const output = {
      benchmark: "dns-operator",
      finished_at: new Date().toISOString(),
      command: `node dist/bench/dns/operator-bench.js --rounds ${args.rounds} --seconds ${args.seconds}${args.cpuProf === null ? "" : ` --cpu-prof ${args.cpuProf}`}${args.nodeArgs.map((a) => ` --node-arg ${a}`).join("")}`,
      machine: await machineRecord(loadAtStart, "a shared 2-vCPU VM; dnsperf, the upstream and the servers share its cores; compare targets within this run (interleaved rounds, order rotating)"),
      setup: {
        path: "netfenced start of this checkout (attachment manager, KernelFilter, loader child), Attach through the DaemonService, allowlist *.bench.test; every allowed answer's address in the attachment's pinned kernel map before the reply leaves",
        upstream: "dnsmasq --no-resolv --addn-hosts (authoritative, TTL 60 s)",
        dnsperf: `dnsperf -c ${CLIENTS} -q ${OUTSTANDING} -T 1 -l ${args.seconds} -v over 1000 names cycled; latency percentiles over every query of the rounds (under that load), per-round values alongside`,
        cpu_per_query: "utime+stime of the server process (and the daemon's loader child) during the run / queries completed",
        cpu_prof: args.cpuProf,
      },
      results,
      nftset_elements_after_runs: (setList.match(/\d+\.\d+\.\d+\.\d+/g) ?? []).length,
      targets: checks,
    };
    await writeJsonFile(args.out, output);
    for (const c of checks) console.log(`${c.met ? "MET    " : "NOT MET"} ${c.name}: ${c.measured}`);
    console.log(`load ${JSON.stringify([output.machine.load_average_at_start.value, output.machine.load_average_at_end.value])}; wrote ${args.out}`);
  } finally {
    for (const { daemon, id } of daemons) await detachAndStop(daemon, id);
    for (const d of dnsmasqs) await d.stop().catch(() => undefined);
    await run("nft", ["delete", "table", "inet", "nfopbench"], true);
  }
}

const inv = invocation(process.argv.slice(2));
const args = parseArgs(inv.options);
if (inv.inner) await inner(args, requireWorkdir(inv));
else {
  await runInNetns({
    script: import.meta.url, prefix: "nfopb", rootError: "the benchmark needs root (network namespace, nftables, eBPF)",
    veths: IFACES.map((h, i) => [h, `nfopw${i}`] as const),
    address: { cidr: "10.253.81.1/30", dev: IFACES[0] },
    workdirPrefix: "nf-opbench-",
  }, inv.options);
}
