/**
 * Issue 13: the whole 10k-CIDR BulkUpdate path as an operator runs it, against `nft -f`
 * replacing a 10k set in the same run. Usage (root, after `npm run build`):
 * `flock /tmp/netfence-bench.lock node dist/bench/control-plane/python-bulk-bench.js
 * [--rounds 10] [--cpu-prof DIR] [--out FILE]`.
 *
 * Inside a throwaway network namespace: `netfenced start` with `control_plane.url` pointing at the
 * Python grpcio control plane of test/compat (python_control_plane.py, which knows nothing of the
 * TypeScript code). A cgroup of ours is attached through the DaemonService; Python answers the
 * Subscribed with a one-entry SubscribedAck (allowlist 100.64.0.0/24). Then, per round, Python
 * sends a BulkUpdate of 10,000 CIDRs (4,999 /24 + 4,999 /32 + 2; two sets alternating, so each
 * one replaces the whole policy; command_id set, so a CommandResult is asked for) and a prober
 * process in the cgroup tries TCP connects (echo) to a /32 of the new set every millisecond:
 * the figure is Python's send → the first connect that succeeds. Before the send the address is
 * checked to be blocked. Baseline in the same rounds (order alternating): an nftables output
 * chain in the namespace rejects 198.19.0.0/16 outside an interval set; `nft -f` replaces that
 * set with the same 10k shape and a second prober (outside the cgroup) connects to the new /32:
 * `nft -f` started → connect succeeds. The echo server is this process, on a `local` route
 * 198.18.0.0/15 in the namespace's lo. `--cpu-prof DIR` runs the daemon with --cpu-prof.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, rmdir, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { cgroup2InNetns } from "../lib/cgroup-mount.js";
import { DaemonClient } from "../../cli/src/daemon-client.js";
import { BenchDaemon, procCpuMs } from "../daemon/daemon-process.js";
import { Prober } from "../daemon/prober-client.js";
import { clamped, walkArgs } from "../lib/bench-args.js";
import { loadAverage, machineRecord, writeJsonFile } from "../lib/run-record.js";
import { median, percentile, round } from "../lib/stats.js";
import { invocation, mountPrivateBpffs, requireWorkdir, runInNetns } from "../lib/netns-runner.js";
import { run } from "../lib/run-command.js";
import { PythonBenchControlPlane } from "./python-cp.js";

const ECHO_PORT = 7007;
const ONE_ENTRY_ACK = { mode: "POLICY_MODE_ALLOWLIST", allowCidrs: [{ cidr: "100.64.0.0/24" }], dns: { mode: "DNS_MODE_DISABLED" } };

interface Args { rounds: number; cpuProf: string | null; out: string }

function parseArgs(argv: string[]): Args {
  const args: Args = { rounds: 10, cpuProf: null, out: path.join(projectRoot(), "bench", "results", "control-plane-python-bulk.json") };
  walkArgs(argv, (a, value) => {
    if (a === "--rounds") args.rounds = clamped(value(), 1, 50);
    else if (a === "--cpu-prof") args.cpuProf = path.resolve(value());
    else if (a === "--out") args.out = path.resolve(value());
    else return false;
    return true;
  });
  return args;
}

/** 4,999 /24 + 4,999 /32 + the probe /32 + one more /24 = 10,000 CIDRs; `net` is 18 (netfence) or 19 (nft). */
export function tenK(v: number, net: 18 | 19): { cidrs: string[]; probe: string } {
  const cidrs: string[] = [];
  for (let i = 0; i < 4999; i++) cidrs.push(`10.${v * 32 + (i >> 8)}.${i & 255}.0/24`);
  for (let i = 0; i < 4999; i++) cidrs.push(`172.${16 + v * 8}.${i >> 8}.${i & 255}/32`);
  const probe = `198.${net}.${v}.1`;
  cidrs.push(`${probe}/32`, `198.${net}.${v + 2}.0/24`);
  return { cidrs, probe };
}

const nowMs = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Starts a TCP echo probe every ~1 ms (each its own socket, 25 ms timeout: a SYN dropped by the
 * old policy is not retransmitted in time, a later probe goes out under the new one) until one
 * succeeds; returns the earliest completion (epoch ms) and how many probes were started.
 */
async function connectUntilOk(prober: Prober, ip: string, limitMs = 5000): Promise<{ doneAtMs: number; attempts: number }> {
  const deadline = Date.now() + limitMs;
  let best: number | null = null;
  let attempts = 0;
  const inFlight = new Set<Promise<void>>();
  while (best === null && Date.now() < deadline) {
    attempts++;
    const p: Promise<void> = prober.probe("tcp", ip, ECHO_PORT, 25).then((r) => {
      if (r.ok && (best === null || r.doneAtMs < best)) best = r.doneAtMs;
    }).finally(() => inFlight.delete(p));
    inFlight.add(p);
    await sleep(1);
  }
  await Promise.all(inFlight);
  if (best === null) throw new Error(`no TCP connect to ${ip} succeeded within ${limitMs} ms`);
  return { doneAtMs: best, attempts };
}

async function mustBeBlocked(prober: Prober, ip: string, what: string): Promise<void> {
  const r = await prober.probe("tcp", ip, ECHO_PORT, 100);
  if (r.ok) throw new Error(`${what}: ${ip} is reachable before the update (the measurement would be void)`);
}

function nftFile(v: number): string {
  return `flush set inet nfcpb allow\nadd element inet nfcpb allow { ${tenK(v, 19).cidrs.join(", ")} }\n`;
}

async function inner(args: Args, workdir: string): Promise<void> {
  await mountPrivateBpffs();
  const loadAtStart = loadAverage();
  await run("ip", ["route", "add", "local", "198.18.0.0/15", "dev", "lo"]);
  await run("nft", ["add table inet nfcpb; add set inet nfcpb allow { type ipv4_addr; flags interval; }; add chain inet nfcpb out { type filter hook output priority 0; policy accept; }; add rule inet nfcpb out ip daddr 198.19.0.0/16 ip daddr != @allow reject"]);
  const echo = net.createServer((s) => s.on("error", () => undefined).pipe(s));
  await new Promise<void>((r) => echo.listen(ECHO_PORT, "0.0.0.0", r));
  const cg = await cgroup2InNetns(workdir);
  const cgDir = path.join(cg.root, `nfcpbulk-${process.pid}`);
  await mkdir(cgDir);
  const proberScript = path.join(projectRoot(), "dist/bench/daemon/prober.js");
  const ns = (await run("ip", ["netns", "identify", String(process.pid)])).trim();
  let cp: PythonBenchControlPlane | null = null;
  let daemon: BenchDaemon | null = null;
  let inCg: Prober | null = null;
  let outside: Prober | null = null;
  let attachmentId = "";
  try {
    cp = await PythonBenchControlPlane.start(ONE_ENTRY_ACK);
    if (args.cpuProf !== null) await mkdir(args.cpuProf, { recursive: true });
    daemon = new BenchDaemon({
      cli: path.join(projectRoot(), "cli/dist/index.js"),
      dir: workdir,
      pinRoot: `/sys/fs/bpf/netfence-pybulk-${process.pid}`,
      portMin: 15_600,
      portMax: 15_609,
      logLevel: "debug", // "command applied" carries planMs and kernelMs (read back below)
      defaultPolicyYaml: "",
      extraYaml: `control_plane: { url: "127.0.0.1:${cp.port}", subscribe_ack_timeout: 10s, heartbeat_interval: 60s }`,
      nodeArgs: args.cpuProf === null ? [] : ["--cpu-prof", `--cpu-prof-dir=${args.cpuProf}`],
    });
    daemon.spawn();
    await daemon.waitReady(120_000);
    const client = new DaemonClient(daemon.socket);
    try {
      attachmentId = (await client.attach({ target: { case: "cgroupPath", value: cgDir }, metadata: {} })).id;
    } finally {
      client.close();
    }
    inCg = await Prober.start(ns, proberScript);
    await inCg.moveTo(cgDir);
    outside = await Prober.start(ns, proberScript);
    for (const v of [0, 1]) await cp.stage(`bulk${v}`, { id: attachmentId, commandId: `bulk${v}`, bulkUpdate: { mode: "POLICY_MODE_ALLOWLIST", allowCidrs: tenK(v, 18).cidrs.map((cidr) => ({ cidr })), dns: { mode: "DNS_MODE_DISABLED" } } });
    for (const v of [0, 1]) await writeFile(path.join(workdir, `nft${v}.nft`), nftFile(v));

    const netfence = { connectMs: [] as number[], resultMs: [] as number[], attempts: [] as number[], daemonCpuMs: [] as number[], loaderCpuMs: [] as number[] };
    const nft = { connectMs: [] as number[], nftExitMs: [] as number[], attempts: [] as number[] };
    const loaderPid = daemon.childPids()[0] ?? null;

    const netfenceRound = async (v: number, measured: boolean): Promise<void> => {
      const { probe } = tenK(v, 18);
      await mustBeBlocked(inCg!, probe, "netfence");
      cp!.results.delete(`bulk${v}`);
      const cpu0 = procCpuMs(daemon!.pid!);
      const l0 = loaderPid === null ? 0 : procCpuMs(loaderPid);
      const sent = cp!.send(`bulk${v}`);
      const ok = await connectUntilOk(inCg!, probe);
      const { wallMs: t0 } = await sent;
      const deadline = Date.now() + 10_000;
      while (!cp!.results.has(`bulk${v}`) && Date.now() < deadline) await sleep(1);
      const result = cp!.results.get(`bulk${v}`);
      if (result === undefined || !result.applied) throw new Error(`bulk${v}: no applied CommandResult (${result?.error ?? "none"})`);
      await mustBeBlocked(inCg!, tenK(1 - v, 18).probe, "netfence replace");
      if (!measured) return;
      netfence.connectMs.push(ok.doneAtMs - t0);
      netfence.resultMs.push(result.wallMs - t0);
      netfence.attempts.push(ok.attempts);
      await sleep(50); // the CPU counters include the state write that follows the result
      netfence.daemonCpuMs.push(procCpuMs(daemon!.pid!) - cpu0);
      if (loaderPid !== null) netfence.loaderCpuMs.push(procCpuMs(loaderPid) - l0);
    };
    const nftRound = async (v: number, measured: boolean): Promise<void> => {
      const { probe } = tenK(v, 19);
      await mustBeBlocked(outside!, probe, "nft");
      const t0 = nowMs();
      const child = spawn("nft", ["-f", path.join(workdir, `nft${v}.nft`)], { stdio: "ignore" });
      const exited = new Promise<number>((resolve, reject) => {
        child.once("error", reject);
        child.once("exit", (code) => (code === 0 ? resolve(nowMs()) : reject(new Error(`nft -f exited with ${code}`))));
      });
      const ok = await connectUntilOk(outside!, probe);
      const exitAt = await exited;
      await mustBeBlocked(outside!, tenK(1 - v, 19).probe, "nft replace");
      if (!measured) return;
      nft.connectMs.push(ok.doneAtMs - t0);
      nft.nftExitMs.push(exitAt - t0);
      nft.attempts.push(ok.attempts);
    };

    // Warm-up: each side once per set (JIT, HTTP/2 windows, nft caches), not measured.
    for (const v of [0, 1]) {
      await netfenceRound(v, false);
      await nftRound(v, false);
    }
    for (let r = 0; r < args.rounds; r++) {
      const v = r % 2;
      if (r % 2 === 0) {
        await netfenceRound(v, true);
        await nftRound(v, true);
      } else {
        await nftRound(v, true);
        await netfenceRound(v, true);
      }
      console.log(`round ${r + 1}: netfence send→connect ${round(netfence.connectMs.at(-1)!, 1)} ms (result ${round(netfence.resultMs.at(-1)!, 1)} ms) · nft -f → connect ${round(nft.connectMs.at(-1)!, 1)} ms · load ${loadAverage()[0]}`);
    }
    const stat = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return { p50: round(percentile(s, 50), 2), p99: round(percentile(s, 99), 2), min: round(s[0]!, 2), max: round(s.at(-1)!, 2), all: xs.map((x) => round(x, 2)), unit: "ms" };
    };
    // The daemon's own split of each measured BulkUpdate (its debug line "command applied").
    const applied = readFileSync(daemon.logFile, "utf8").split("\n").filter((l) => l.includes('"msg":"command applied"') && l.includes('"command":"bulk-update"'))
      .map((l) => JSON.parse(l) as { planMs: number; kernelMs: number }).slice(-args.rounds);
    const output = {
      benchmark: "control-plane-python-bulk",
      finished_at: new Date().toISOString(),
      command: `node dist/bench/control-plane/python-bulk-bench.js --rounds ${args.rounds}${args.cpuProf === null ? "" : ` --cpu-prof ${args.cpuProf}`}`,
      machine: await machineRecord(loadAtStart, "a shared 2-vCPU VM; Python, the daemon, its loader, the probers and this process share its cores; netfence and nft rounds interleaved (order alternating)" + (args.cpuProf === null ? "" : "; the daemon ran with --cpu-prof (slower)")),
      setup: {
        path: "Python grpcio control plane (test/compat/python_control_plane.py) → gRPC stream → netfenced (control_plane.url) → wire decode, validation, plan → KernelFilter → loader child (atomic replace) → CommandResult; a prober in the attached cgroup connects (TCP echo) to a /32 of the new set every ~1 ms",
        attach: "Attach of a cgroup through the DaemonService; Python answers Subscribed with a one-entry SubscribedAck (allowlist 100.64.0.0/24, DNS disabled)",
        bulk_update: "10,000 CIDRs (4,999 /24 + 4,999 /32 + 2), two sets alternating so each replaces the whole policy; command_id set (CommandResult asked for)",
        baseline: "nftables in the same namespace: output chain rejecting 198.19.0.0/16 outside an interval set; `nft -f` (flush set + add 10,000 elements of the same shape, one transaction) → a prober outside the cgroup connects to the new /32",
        clocks: "wall clock (epoch ms) in every process: Python's send (before the stream's put), the prober's connect completion, Python's receipt of the CommandResult",
      },
      results: {
        netfence: {
          send_to_connect: stat(netfence.connectMs),
          send_to_command_result: stat(netfence.resultMs),
          connect_attempts: netfence.attempts,
          daemon_plan: stat(applied.map((a) => a.planMs)),
          daemon_kernel_write: { ...stat(applied.map((a) => a.kernelMs)), note: "encode + loader REPLACE round trip (the loader's fill and flip)" },
          daemon_cpu_per_bulk: { value: round(median(netfence.daemonCpuMs), 1), unit: "ms (median)", all: netfence.daemonCpuMs },
          loader_cpu_per_bulk: { value: netfence.loaderCpuMs.length === 0 ? null : round(median(netfence.loaderCpuMs), 1), unit: "ms (median)", all: netfence.loaderCpuMs },
        },
        nft_baseline: { nft_start_to_connect: stat(nft.connectMs), nft_exit: stat(nft.nftExitMs), connect_attempts: nft.attempts },
        ratio_p50_netfence_over_nft: round(percentile([...netfence.connectMs].sort((a, b) => a - b), 50) / percentile([...nft.connectMs].sort((a, b) => a - b), 50), 3),
      },
    };
    await writeJsonFile(args.out, output);
    console.log(JSON.stringify({ netfence_p50: output.results.netfence.send_to_connect.p50, result_p50: output.results.netfence.send_to_command_result.p50, nft_p50: output.results.nft_baseline.nft_start_to_connect.p50, load: [output.machine.load_average_at_start.value, output.machine.load_average_at_end.value] }));
    console.log(`wrote ${args.out}`);
  } finally {
    await inCg?.stop();
    await outside?.stop();
    if (daemon !== null) {
      const client = new DaemonClient(daemon.socket);
      if (attachmentId !== "") await client.detach(attachmentId).catch(() => undefined);
      client.close();
      await daemon.stop("SIGTERM").catch(() => undefined);
    }
    await cp?.stop();
    echo.close();
    await rmdir(cgDir).catch(() => undefined);
    await cg.release();
  }
}

const inv = invocation(process.argv.slice(2));
const args = parseArgs(inv.options);
if (inv.inner) await inner(args, requireWorkdir(inv));
else {
  await runInNetns({ script: import.meta.url, prefix: "nfcppy", rootError: "the benchmark needs root (network namespace, cgroup, eBPF)", veths: [], workdirPrefix: "nf-cppybench-" }, inv.options);
}
