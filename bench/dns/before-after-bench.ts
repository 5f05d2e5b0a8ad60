/**
 * DNS path of two daemon builds, interleaved in one run (issue 12: before and after the
 * architecture step). Each build is a real `netfenced start` from its own checkout
 * (`--daemon-dir LABEL=DIR`, twice; the daemon runs that checkout's loader and eBPF objects),
 * attached through the DaemonService (Attach) to its own veth with one allowlist DNS server
 * (`*.bench.test`) whose allowed answers go into the attachment's pinned kernel map before the
 * reply leaves: the production path. Usage (root, after `npm run build` here and in the other
 * checkout): `node dist/bench/dns/before-after-bench.js --daemon-dir before=/work/wt-before
 * --daemon-dir after=. [--rounds 5] [--seconds 8] [--latency-seconds 4] [--out FILE]`.
 *
 * Same namespace set-up as codec-bench.ts (`nfba<pid>`, own lo, one veth per build, a private
 * bpffs; the outer process always deletes it). Per round and build (order alternating): warm
 * throughput, one cold pass over fresh names (every answer a new kernel-map entry), 500 q/s
 * latency; CPU time per query of the daemon and of its loader child from /proc. The ratios are
 * second build over first (after / before).
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { BenchDaemon, procCpuMs } from "../daemon/daemon-process.js";
import { attachInterface, BENCH_TEST_ALLOWLIST_YAML, benchDnsYaml, detachAndStop } from "../lib/attached-daemon.js";
import { takeDnsperfSchedule, walkArgs } from "../lib/bench-args.js";
import { checkedBuilds, daemonDirArgs, ownLoader, parseDaemonDirArg, secondOverFirst, type DaemonBuild } from "../lib/daemon-build.js";
import { DnsNameFiles } from "../lib/dns-names.js";
import { loadAverage, machineRecord, writeJsonFile } from "../lib/run-record.js";
import { invocation, mountPrivateBpffs, requireWorkdir, runInNetns } from "../lib/netns-runner.js";
import { Dnsmasq } from "./bench-processes.js";
import { median } from "./decision-bench.js";
import { latencyPercentiles, round } from "./run-summary.js";
import { percentile, runDnsperf, type DnsperfResult } from "./dnsperf.js";

const UPSTREAM_PORT = 15411;
const portOf = (i: number): number => 15412 + i;
const ifaceOf = (i: number): string => `nfbah${i}`;
const COLD_NAMES = 20_000;

interface Args { rounds: number; seconds: number; latencySeconds: number; out: string; builds: DaemonBuild[] }

function parseArgs(argv: string[]): Args {
  const args: Args = { rounds: 5, seconds: 8, latencySeconds: 4, out: path.join(projectRoot(), "bench", "results", "dns-before-after.json"), builds: [] };
  walkArgs(argv, (a, value) => {
    if (a === "--out") args.out = path.resolve(value());
    else if (a === "--daemon-dir") args.builds.push(parseDaemonDirArg(value()));
    else return takeDnsperfSchedule(args, a, value);
    return true;
  });
  args.builds = checkedBuilds(args.builds, projectRoot());
  return args;
}

interface Running { build: DaemonBuild; daemon: BenchDaemon; id: string; port: number; loaderPid: number; loaderExe: string | null }

async function startDaemon(dir: string, build: DaemonBuild, i: number): Promise<Running> {
  const port = portOf(i);
  const daemon = new BenchDaemon({
    cli: build.cli,
    dir: await mkdtemp(path.join(dir, `${build.label}-`)),
    pinRoot: `/sys/fs/bpf/netfence-babench-${build.label}-${process.pid}`,
    portMin: port,
    portMax: port,
    logLevel: "warn",
    dnsYaml: benchDnsYaml(port, UPSTREAM_PORT),
    defaultPolicyYaml: BENCH_TEST_ALLOWLIST_YAML,
  });
  daemon.spawn();
  await daemon.waitReady(120_000);
  const res = await attachInterface(daemon, ifaceOf(i));
  if (!res.dnsAddress.endsWith(`:${port}`)) throw new Error(`${build.label}: DNS server on ${res.dnsAddress}, expected port ${port}`);
  const loader = ownLoader(daemon, build);
  return { build, daemon, id: res.id, port, loaderPid: loader.pid, loaderExe: loader.exe };
}

interface Sample { qps: number; completed: number; lost: number; cpuUsPerQuery: number; loaderCpuUsPerQuery: number; rcodes: Record<string, number> }

/** One dnsperf run against a daemon, with the CPU time of the daemon and of its loader per completed query. */
async function measure(d: Running, go: () => Promise<DnsperfResult>): Promise<Sample> {
  const pid = d.daemon.pid!;
  const cpu0 = procCpuMs(pid);
  const lcpu0 = procCpuMs(d.loaderPid);
  const result = await go();
  const cpuMs = procCpuMs(pid) - cpu0;
  const lcpuMs = procCpuMs(d.loaderPid) - lcpu0;
  const per = (ms: number): number => round((ms * 1000) / Math.max(1, result.completed), 2);
  return { qps: round(result.qps, 0), completed: result.completed, lost: result.lost, cpuUsPerQuery: per(cpuMs), loaderCpuUsPerQuery: per(lcpuMs), rcodes: result.rcodes };
}

async function inner(args: Args, dir: string): Promise<void> {
  await mountPrivateBpffs();
  const loadAtStart = loadAverage();
  const labels = args.builds.map((b) => b.label);
  const names = new DnsNameFiles(dir);
  const cold: Record<string, string[]> = {};
  for (const l of labels) cold[l] = await names.coldRounds(l, args.rounds, COLD_NAMES);
  const { hosts, warm: warmFile } = await names.finish();

  let upstream: Dnsmasq | null = null;
  const daemons: Running[] = [];
  try {
    upstream = await Dnsmasq.start(UPSTREAM_PORT, [`--addn-hosts=${hosts}`, "--local-ttl=60"], path.join(dir, "upstream.log"));
    for (const [i, b] of args.builds.entries()) daemons.push(await startDaemon(dir, b, i));
    const samples: Record<string, Record<"warm" | "cold", Sample[]>> = {};
    const latencies: Record<string, number[]> = {};
    for (const l of labels) {
      samples[l] = { warm: [], cold: [] };
      latencies[l] = [];
    }
    const base = { server: "127.0.0.1", seconds: args.seconds, clients: 4, outstanding: 100 };
    for (let r = 0; r < args.rounds; r++) {
      const order = r % 2 === 0 ? daemons : [...daemons].reverse();
      for (const d of order) {
        const l = d.build.label;
        const w = await measure(d, () => runDnsperf({ ...base, port: d.port, dataFile: warmFile }));
        samples[l]!.warm.push(w);
        const k = await measure(d, () => runDnsperf({ ...base, port: d.port, dataFile: cold[l]![r]!, onePass: true }));
        samples[l]!.cold.push(k);
        const lat = await runDnsperf({ server: "127.0.0.1", port: d.port, dataFile: warmFile, seconds: args.latencySeconds, clients: 1, outstanding: 10, maxQps: 500, verbose: true });
        latencies[l]!.push(...lat.latenciesUs);
        const lsorted = [...lat.latenciesUs].sort((a, b) => a - b);
        console.log(`round ${r + 1} ${l.padEnd(8)} warm ${w.qps} q/s ${w.cpuUsPerQuery}+${w.loaderCpuUsPerQuery} µs CPU/q · cold ${k.qps} q/s ${k.cpuUsPerQuery}+${k.loaderCpuUsPerQuery} µs CPU/q · 500 q/s p50 ${round(percentile(lsorted, 50))} p99 ${round(percentile(lsorted, 99))} µs · load ${os.loadavg()[0]!.toFixed(2)}`);
      }
    }
    const summary = (l: string) => {
      const phase = (p: "warm" | "cold") => {
        const s = samples[l]![p];
        return {
          qps: { value: median(s.map((x) => x.qps)), unit: "queries/s", per_round: s.map((x) => x.qps) },
          daemon_cpu_per_query: { value: median(s.map((x) => x.cpuUsPerQuery)), unit: "µs", per_round: s.map((x) => x.cpuUsPerQuery) },
          loader_cpu_per_query: { value: median(s.map((x) => x.loaderCpuUsPerQuery)), unit: "µs", per_round: s.map((x) => x.loaderCpuUsPerQuery) },
          lost: s.map((x) => x.lost),
          response_codes: s.map((x) => x.rcodes),
        };
      };
      return {
        warm: phase("warm"),
        cold: phase("cold"),
        latency_at_500qps: latencyPercentiles(latencies[l]!),
      };
    };
    const results: Record<string, ReturnType<typeof summary>> = {};
    for (const l of labels) results[l] = summary(l);
    const comparison = secondOverFirst(labels, results, {
      warm_qps: (r) => r.warm.qps.value,
      cold_qps: (r) => r.cold.qps.value,
      warm_daemon_cpu_per_query: (r) => r.warm.daemon_cpu_per_query.value,
      cold_daemon_cpu_per_query: (r) => r.cold.daemon_cpu_per_query.value,
      p50: (r) => r.latency_at_500qps.p50.value,
      p99: (r) => r.latency_at_500qps.p99.value,
    });
    const output = {
      benchmark: "dns-before-after",
      finished_at: new Date().toISOString(),
      command: `node dist/bench/dns/before-after-bench.js ${daemonDirArgs(args.builds).join(" ")} --rounds ${args.rounds} --seconds ${args.seconds} --latency-seconds ${args.latencySeconds}`,
      machine: await machineRecord(loadAtStart, "a shared 2-vCPU VM; dnsperf, the upstream and the daemons share its cores; compare the builds within this run (interleaved rounds, order alternating)"),
      builds: daemons.map((d) => ({ label: d.build.label, checkout: d.build.dir, cli: d.build.cli, loader: d.loaderExe })),
      setup: {
        path: "netfenced start of each checkout (attachment manager, KernelFilter, its own loader child), Attach through the DaemonService, one attachment in allowlist mode (*.bench.test), every allowed answer's address in the pinned kernel map before the reply",
        throughput_runs: `dnsperf -c 4 -q 100 -T 1 -l ${args.seconds} over 1000 warm names; cold = one pass over ${COLD_NAMES} fresh names (every answer a new kernel-map entry); ${args.rounds} rounds, order alternating, median reported`,
        latency_runs: `dnsperf -c 1 -q 10 -Q 500 -l ${args.latencySeconds} -v per round, latencies pooled over the rounds`,
        cpu_per_query: "utime+stime of the daemon's Node process and of its loader child (/proc/<pid>/stat) during the run / queries completed",
      },
      results,
      comparison,
    };
    await writeJsonFile(args.out, output);
    console.log(JSON.stringify({ comparison, load: [output.machine.load_average_at_start.value, output.machine.load_average_at_end.value] }));
    console.log(`wrote ${args.out}`);
  } finally {
    for (const { daemon, id } of daemons) await detachAndStop(daemon, id);
    await upstream?.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

const inv = invocation(process.argv.slice(2));
const args = parseArgs(inv.options);
if (inv.inner) await inner(args, requireWorkdir(inv));
else {
  await runInNetns({
    script: import.meta.url, prefix: "nfba", rootError: "the benchmark needs root (network namespace, eBPF)",
    veths: args.builds.map((_, i) => [ifaceOf(i), `nfbaw${i}`] as const),
    address: { cidr: "10.253.79.1/30", dev: ifaceOf(0) },
    workdirPrefix: "nf-babench-",
  }, inv.options);
}
