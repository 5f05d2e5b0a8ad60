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
import { mkdtemp, readFile, rm, writeFile, mkdir } from "node:fs/promises";
import { spawn } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { DNS_QUOTA_LIMITS } from "../../daemon/src/dns/dns-quotas.js";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { BenchDaemon, procCpuMs } from "../daemon/daemon-process.js";
import { DaemonClient } from "../../cli/src/daemon-client.js";
import { daemonBuild, parseDaemonDirArg, processExe, type DaemonBuild } from "../lib/daemon-build.js";
import { Dnsmasq, run } from "./bench-processes.js";
import { percentile, runDnsperf, type DnsperfResult } from "./dnsperf.js";

const UPSTREAM_PORT = 15411;
const portOf = (i: number): number => 15412 + i;
const ifaceOf = (i: number): string => `nfbah${i}`;
const COLD_NAMES = 20_000;

interface Args { inner: boolean; rounds: number; seconds: number; latencySeconds: number; out: string; workdir: string | null; builds: DaemonBuild[] }

function parseArgs(argv: string[]): Args {
  const args: Args = { inner: false, rounds: 5, seconds: 8, latencySeconds: 4, out: path.join(projectRoot(), "bench", "results", "dns-before-after.json"), workdir: null, builds: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--inner") args.inner = true;
    else if (a === "--rounds") args.rounds = Math.min(9, Math.max(1, Number(next())));
    else if (a === "--seconds") args.seconds = Math.min(60, Math.max(1, Number(next())));
    else if (a === "--latency-seconds") args.latencySeconds = Math.min(30, Math.max(1, Number(next())));
    else if (a === "--out") args.out = path.resolve(next());
    else if (a === "--workdir") args.workdir = path.resolve(next());
    else if (a === "--daemon-dir") args.builds.push(parseDaemonDirArg(next()));
    else throw new Error(`unknown argument ${a}`);
  }
  if (args.builds.length === 0) args.builds.push(daemonBuild("this", projectRoot()));
  if (args.builds.length > 3) throw new Error("at most 3 --daemon-dir");
  if (new Set(args.builds.map((b) => b.label)).size !== args.builds.length) throw new Error("--daemon-dir labels must differ");
  return args;
}

const buildArgs = (args: Args): string[] => args.builds.flatMap((b) => ["--daemon-dir", `${b.label}=${b.dir}`]);

async function outer(args: Args): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("the benchmark needs root (network namespace, eBPF)");
  const ns = `nfba${process.pid}`;
  const workdir = await mkdtemp(path.join(os.tmpdir(), "nf-babench-"));
  const cleanup = async (): Promise<void> => {
    // Anything still running in our namespace was started by this benchmark: stop it by PID.
    const pids = (await run("ip", ["netns", "pids", ns], true)).split(/\s+/).filter((p) => /^\d+$/.test(p)).map(Number);
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await run("ip", ["netns", "del", ns], true);
    await rm(workdir, { recursive: true, force: true });
  };
  const onSignal = (): void => void cleanup().finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const inNs = (...cmd: string[]): Promise<string> => run("ip", ["netns", "exec", ns, ...cmd]);
    await run("ip", ["netns", "add", ns]);
    await inNs("ip", "link", "set", "lo", "up");
    for (let i = 0; i < args.builds.length; i++) {
      await inNs("ip", "link", "add", ifaceOf(i), "type", "veth", "peer", "name", `nfbaw${i}`);
      await inNs("ip", "link", "set", ifaceOf(i), "up");
      await inNs("ip", "link", "set", `nfbaw${i}`, "up");
    }
    // dnsperf resolves -s with AI_ADDRCONFIG: it needs a non-loopback IPv4 address in the namespace.
    await inNs("ip", "addr", "add", "10.253.79.1/30", "dev", ifaceOf(0));
    const self = fileURLToPath(import.meta.url);
    const child = spawn("ip", [
      "netns", "exec", ns, process.execPath, self, "--inner", "--rounds", String(args.rounds), "--seconds", String(args.seconds),
      "--latency-seconds", String(args.latencySeconds), "--out", args.out, "--workdir", workdir, ...buildArgs(args),
    ], { stdio: "inherit" });
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    if (code !== 0) throw new Error(`benchmark inner run failed (${code})`);
  } finally {
    await cleanup();
  }
}

const round = (v: number, digits = 1): number => Math.round(v * 10 ** digits) / 10 ** digits;
const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

interface Running { build: DaemonBuild; daemon: BenchDaemon; id: string; port: number; loaderPid: number; loaderExe: string | null }

async function startDaemon(dir: string, build: DaemonBuild, i: number): Promise<Running> {
  const port = portOf(i);
  const q = DNS_QUOTA_LIMITS;
  const daemon = new BenchDaemon({
    cli: build.cli,
    dir: await mkdtemp(path.join(dir, `${build.label}-`)),
    pinRoot: `/sys/fs/bpf/netfence-babench-${build.label}-${process.pid}`,
    portMin: port,
    portMax: port,
    logLevel: "warn",
    dnsYaml: `dns: { listen_addr: 127.0.0.1, port_min: ${port}, port_max: ${port}, upstream: "127.0.0.1:${UPSTREAM_PORT}", min_ttl: 300s, port_guard: false, quotas: { qps: ${q.qps}, inflight: ${q.inflight}, learned: ${q.learned}, answer_records: ${q.answerRecords}, tcp_connections: ${q.tcpConnections}, tcp_per_source: ${q.tcpPerSource} } }`,
    defaultPolicyYaml: `default_policy: { mode: allowlist, dns: { mode: allowlist, allow_domains: ["*.bench.test"], deny_domains: ["*.denied.bench.test"] } }`,
  });
  daemon.spawn();
  await daemon.waitReady(120_000);
  const client = new DaemonClient(daemon.socket);
  try {
    const res = await client.attach({ target: { case: "interfaceName", value: ifaceOf(i) }, metadata: {} });
    if (!res.dnsAddress.endsWith(`:${port}`)) throw new Error(`${build.label}: DNS server on ${res.dnsAddress}, expected port ${port}`);
    const loaders = daemon.childPids();
    if (loaders.length !== 1) throw new Error(`${build.label}: expected one loader child, found ${loaders.length}`);
    const loaderExe = processExe(loaders[0]!);
    // The daemon must run its own checkout's loader (projectRoot() of its dist), not another build's.
    if (loaderExe !== null && loaderExe.replace(/ \(deleted\)$/, "") !== build.loader) throw new Error(`${build.label}: the daemon runs ${loaderExe}, expected ${build.loader}`);
    return { build, daemon, id: res.id, port, loaderPid: loaders[0]!, loaderExe };
  } finally {
    client.close();
  }
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

async function inner(args: Args): Promise<void> {
  const mounts = await readFile("/proc/mounts", "utf8");
  if (!mounts.split("\n").some((l) => l.split(" ")[1] === "/sys/fs/bpf" && l.split(" ")[2] === "bpf")) await run("mount", ["-t", "bpf", "bpf", "/sys/fs/bpf"]);
  const loadAtStart = os.loadavg().map((v) => round(v, 2));
  if (args.workdir === null) throw new Error("--inner needs --workdir");
  const dir = args.workdir;
  const labels = args.builds.map((b) => b.label);
  const hosts: string[] = ["10.77.0.1 probe.bench.test"];
  const warm: string[] = [];
  for (let i = 0; i < 1000; i++) {
    hosts.push(`10.77.${i >> 8}.${i & 255} w${i}.bench.test`);
    warm.push(`w${i}.bench.test A`);
  }
  let n = 0;
  const coldFile = async (name: string): Promise<string> => {
    const lines: string[] = [];
    for (let i = 0; i < COLD_NAMES; i++, n++) {
      hosts.push(`10.${64 + (n >> 16)}.${(n >> 8) & 255}.${n & 255} c${n}.bench.test`);
      lines.push(`c${n}.bench.test A`);
    }
    const file = path.join(dir, name);
    await writeFile(file, lines.join("\n") + "\n");
    return file;
  };
  const cold: Record<string, string[]> = {};
  for (const l of labels) {
    cold[l] = [];
    for (let r = 0; r < args.rounds; r++) cold[l]!.push(await coldFile(`cold-${l}-${r}.txt`));
  }
  await writeFile(path.join(dir, "hosts"), hosts.join("\n") + "\n");
  const warmFile = path.join(dir, "warm.txt");
  await writeFile(warmFile, warm.join("\n") + "\n");

  let upstream: Dnsmasq | null = null;
  const daemons: Running[] = [];
  try {
    upstream = await Dnsmasq.start(UPSTREAM_PORT, [`--addn-hosts=${path.join(dir, "hosts")}`, "--local-ttl=60"], path.join(dir, "upstream.log"));
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
      const sorted = [...latencies[l]!].sort((a, b) => a - b);
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
        latency_at_500qps: {
          p50: { value: round(percentile(sorted, 50)), unit: "µs" },
          p90: { value: round(percentile(sorted, 90)), unit: "µs" },
          p99: { value: round(percentile(sorted, 99)), unit: "µs" },
          samples: sorted.length,
        },
      };
    };
    const results: Record<string, ReturnType<typeof summary>> = {};
    for (const l of labels) results[l] = summary(l);
    const ratio = (a: number, b: number): number => round(a / b, 3);
    let comparison: Record<string, number | string> | null = null;
    if (labels.length >= 2) {
      const [first, second] = [results[labels[0]!]!, results[labels[1]!]!];
      comparison = {
        ratios: `${labels[1]} / ${labels[0]}`,
        warm_qps: ratio(second.warm.qps.value, first.warm.qps.value),
        cold_qps: ratio(second.cold.qps.value, first.cold.qps.value),
        warm_daemon_cpu_per_query: ratio(second.warm.daemon_cpu_per_query.value, first.warm.daemon_cpu_per_query.value),
        cold_daemon_cpu_per_query: ratio(second.cold.daemon_cpu_per_query.value, first.cold.daemon_cpu_per_query.value),
        p50: ratio(second.latency_at_500qps.p50.value, first.latency_at_500qps.p50.value),
        p99: ratio(second.latency_at_500qps.p99.value, first.latency_at_500qps.p99.value),
      };
    }
    const cpu = /model name\s*:\s*(.*)/.exec(await readFile("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown";
    const output = {
      benchmark: "dns-before-after",
      finished_at: new Date().toISOString(),
      command: `node dist/bench/dns/before-after-bench.js ${buildArgs(args).join(" ")} --rounds ${args.rounds} --seconds ${args.seconds} --latency-seconds ${args.latencySeconds}`,
      machine: {
        nproc: os.availableParallelism(), cpu, kernel: os.release(), node: process.version,
        load_average_at_start: { value: loadAtStart, unit: "runnable tasks (1/5/15 min)" },
        load_average_at_end: { value: os.loadavg().map((v) => round(v, 2)), unit: "runnable tasks (1/5/15 min)" },
        note: "a shared 2-vCPU VM; dnsperf, the upstream and the daemons share its cores; compare the builds within this run (interleaved rounds, order alternating)",
      },
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
    await mkdir(path.dirname(args.out), { recursive: true });
    await writeFile(args.out, JSON.stringify(output, null, 2) + "\n");
    console.log(JSON.stringify({ comparison, load: [output.machine.load_average_at_start.value, output.machine.load_average_at_end.value] }));
    console.log(`wrote ${args.out}`);
  } finally {
    for (const { daemon, id } of daemons) {
      const client = new DaemonClient(daemon.socket);
      await client.detach(id).catch(() => undefined);
      client.close();
      await daemon.stop("SIGTERM").catch(() => undefined);
    }
    await upstream?.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

const args = parseArgs(process.argv.slice(2));
await (args.inner ? inner(args) : outer(args));
