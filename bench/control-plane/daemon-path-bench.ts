/**
 * Control-plane commands through the production path, for one or more daemon builds interleaved
 * in one run (issue 12: before and after the architecture step). Each build is a real
 * `netfenced start` from its own checkout (`--daemon-dir LABEL=DIR`, repeatable; the daemon runs
 * that checkout's loader and eBPF objects) configured with `control_plane.url` pointing at its
 * own SDK ControlPlaneServer in this process. As an operator does it: Attach through the
 * DaemonService (the daemon sends Subscribed, the control plane answers with a one-entry
 * SubscribedAck: allowlist 100.64.0.0/24), then the control plane pushes commands on the stream
 * and awaits each CommandResult, which the daemon sends only after the loader acknowledged the
 * kernel map update. Usage (root, after `npm run build` here and in the other checkout):
 * `node dist/bench/control-plane/daemon-path-bench.js --daemon-dir before=/work/wt-before
 * --daemon-dir after=. [--rounds 6] [--commands 1000] [--bulks 3] [--out FILE]`.
 *
 * Runs inside a throwaway network namespace `nfcpba<pid>` (own lo, one veth per build, a private
 * bpffs) that the outer process always deletes. Per round and build (order alternating): a
 * sequence of single-CIDR commands (AllowCidr / RemoveCidr of a /32 alternating, one in flight:
 * round-trip time and commands/s), then BulkUpdates of 10,000 CIDRs; CPU time of the daemon and
 * of its loader child per command from /proc. Ratios are second build over first. After each
 * round's BulkUpdates the policy goes back to the one entry (untimed), so the single commands run
 * against a small state; `--keep-bulk-state` keeps the 10,000 CIDRs instead (each command then
 * persists a snapshot of that size: ~5 ms of daemon CPU per command on this VM).
 */
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pino from "pino";
import { ControlPlaneServer, type DaemonHandle } from "@netfence/control-plane-sdk";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { BenchDaemon, procCpuMs } from "../daemon/daemon-process.js";
import { attachInterface, detachAndStop } from "../lib/attached-daemon.js";
import { clamped, walkArgs } from "../lib/bench-args.js";
import { checkedBuilds, daemonDirArgs, ownLoader, parseDaemonDirArg, secondOverFirst, type DaemonBuild } from "../lib/daemon-build.js";
import { loadAverage, machineRecord, writeJsonFile } from "../lib/run-record.js";
import { median, percentile, round } from "../lib/stats.js";
import { invocation, mountPrivateBpffs, requireWorkdir, runInNetns } from "../lib/netns-runner.js";
import { until } from "./bench-util.js";

const silent = pino({ level: "silent" });
const ifaceOf = (i: number): string => `nfcph${i}`;
/** The one-entry policy of the SubscribedAck. */
const ONE_ENTRY = { mode: "allowlist" as const, allow: ["100.64.0.0/24"], dns: { mode: "disabled" as const } };

interface Args { rounds: number; commands: number; bulks: number; keepBulkState: boolean; out: string; builds: DaemonBuild[] }

function parseArgs(argv: string[]): Args {
  const args: Args = { rounds: 6, commands: 1000, bulks: 3, keepBulkState: false, out: path.join(projectRoot(), "bench", "results", "control-plane-before-after.json"), builds: [] };
  walkArgs(argv, (a, value) => {
    if (a === "--rounds") args.rounds = clamped(value(), 1, 20);
    else if (a === "--commands") args.commands = clamped(value(), 10, 20_000);
    else if (a === "--bulks") args.bulks = clamped(value(), 0, 20);
    else if (a === "--keep-bulk-state") args.keepBulkState = true;
    else if (a === "--out") args.out = path.resolve(value());
    else if (a === "--daemon-dir") args.builds.push(parseDaemonDirArg(value()));
    else return false;
    return true;
  });
  args.builds = checkedBuilds(args.builds, projectRoot());
  return args;
}

/** The builds and the state flag, as the results' command line records them. */
const buildArgs = (args: Args): string[] => [...daemonDirArgs(args.builds), ...(args.keepBulkState ? ["--keep-bulk-state"] : [])];

interface Running { build: DaemonBuild; server: ControlPlaneServer; daemon: BenchDaemon; handle: DaemonHandle; id: string; loaderPid: number; loaderExe: string | null }

async function startDaemon(dir: string, build: DaemonBuild, i: number): Promise<Running> {
  let handle: DaemonHandle | null = null;
  const server = new ControlPlaneServer({
    logger: silent,
    commandTimeoutMs: 30_000,
    hooks: {
      // The one-entry SubscribedAck an operator's control plane sends for a new attachment.
      onSubscribed: () => ONE_ENTRY,
      onDaemonSynced: (d) => {
        handle = d;
      },
    },
  });
  const cpPort = await server.listen("127.0.0.1:0");
  const dnsPort = 15_500 + 10 * i;
  const daemon = new BenchDaemon({
    cli: build.cli,
    dir: await mkdtemp(path.join(dir, `${build.label}-`)),
    pinRoot: `/sys/fs/bpf/netfence-cpbabench-${build.label}-${process.pid}`,
    portMin: dnsPort,
    portMax: dnsPort + 9,
    logLevel: "warn",
    defaultPolicyYaml: "",
    extraYaml: `control_plane: { url: "127.0.0.1:${cpPort}", subscribe_ack_timeout: 10s, heartbeat_interval: 60s }`,
  });
  try {
    daemon.spawn();
    await daemon.waitReady(120_000);
    await until(() => handle !== null, `${build.label}: the daemon's control-plane sync`, 30_000);
    const { id } = await attachInterface(daemon, ifaceOf(i));
    const loader = ownLoader(daemon, build);
    return { build, server, daemon, handle: handle as unknown as DaemonHandle, id, loaderPid: loader.pid, loaderExe: loader.exe };
  } catch (err) {
    await daemon.stop("SIGTERM").catch(() => undefined);
    await server.close(100);
    throw err;
  }
}

interface CommandSample { rttMs: number[]; commandsPerSecond: number; daemonCpuUsPerCommand: number; loaderCpuUsPerCommand: number }

/** `n` single-CIDR commands, one in flight, alternating AllowCidr / RemoveCidr of the same /32. */
async function commands(d: Running, n: number, r: number): Promise<CommandSample> {
  const rtt: number[] = [];
  const cpu0 = procCpuMs(d.daemon.pid!);
  const lcpu0 = procCpuMs(d.loaderPid);
  const t0 = performance.now();
  const deadline = Date.now() + 120_000;
  for (let i = 0; i < n && Date.now() < deadline; i++) {
    const k = r * n + (i >> 1);
    const cidr = `100.66.${(k >> 8) & 255}.${k & 255}/32`;
    const s = performance.now();
    const o = i % 2 === 0 ? await d.handle.allowCidr(d.id, cidr) : await d.handle.removeCidr(d.id, cidr);
    rtt.push(performance.now() - s);
    if (!o.applied) throw new Error(`${d.build.label}: command rejected: ${o.error}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  const per = (ms: number): number => round((ms * 1000) / rtt.length, 1);
  return {
    rttMs: rtt,
    commandsPerSecond: round(rtt.length / seconds, 0),
    daemonCpuUsPerCommand: per(procCpuMs(d.daemon.pid!) - cpu0),
    loaderCpuUsPerCommand: per(procCpuMs(d.loaderPid) - lcpu0),
  };
}

/**
 * BulkUpdates of 10,000 CIDRs (two alternating sets, so every one replaces the whole map); then,
 * unless `keep`, one untimed BulkUpdate back to the one-entry policy, so the single commands of
 * the next round run against the state an attachment has after its SubscribedAck (every command
 * persists the daemon's snapshot, whose size follows the policy's).
 */
async function bulks(d: Running, n: number, r: number, keep: boolean): Promise<number[]> {
  const out: number[] = [];
  for (let rep = 0; rep < n; rep++) {
    const v = (r * n + rep) % 2;
    const cidrs = Array.from({ length: 10_000 }, (_, i) => `100.${72 + v * 8 + (i >> 12)}.${(i >> 4) & 255}.${(i & 15) << 4}/28`);
    const t0 = performance.now();
    const o = await d.handle.bulkUpdate(d.id, { mode: "allowlist", allow: cidrs, dns: { mode: "disabled" } });
    out.push(performance.now() - t0);
    if (!o.applied) throw new Error(`${d.build.label}: bulk rejected: ${o.error}`);
  }
  if (!keep) {
    const o = await d.handle.bulkUpdate(d.id, ONE_ENTRY);
    if (!o.applied) throw new Error(`${d.build.label}: bulk rejected: ${o.error}`);
  }
  return out;
}

async function inner(args: Args, workdir: string): Promise<void> {
  await mountPrivateBpffs();
  const loadAtStart = loadAverage();
  const labels = args.builds.map((b) => b.label);
  const daemons: Running[] = [];
  try {
    for (const [i, b] of args.builds.entries()) daemons.push(await startDaemon(workdir, b, i));
    // Warm-up (JIT, HTTP/2 windows), not measured.
    for (const d of daemons) {
      await commands(d, 200, 1000);
      await bulks(d, 1, 0, args.keepBulkState);
    }
    const cmd: Record<string, CommandSample[]> = {};
    const bulk: Record<string, number[]> = {};
    for (const l of labels) {
      cmd[l] = [];
      bulk[l] = [];
    }
    for (let r = 0; r < args.rounds; r++) {
      const order = r % 2 === 0 ? daemons : [...daemons].reverse();
      for (const d of order) {
        const l = d.build.label;
        const c = await commands(d, args.commands, r);
        cmd[l]!.push(c);
        const b = await bulks(d, args.bulks, r, args.keepBulkState);
        bulk[l]!.push(...b);
        const sorted = [...c.rttMs].sort((x, y) => x - y);
        console.log(`round ${r + 1} ${l.padEnd(8)} ${c.commandsPerSecond} commands/s · p50 ${round(percentile(sorted, 50), 3)} p99 ${round(percentile(sorted, 99), 3)} ms · CPU/command ${c.daemonCpuUsPerCommand}+${c.loaderCpuUsPerCommand} µs · bulk 10k ${b.map((x) => round(x, 1)).join(", ")} ms · load ${os.loadavg()[0]!.toFixed(2)}`);
      }
    }
    const summary = (l: string) => {
      const all = cmd[l]!.flatMap((c) => c.rttMs).sort((a, b) => a - b);
      const b = [...bulk[l]!].sort((x, y) => x - y);
      return {
        single_command: {
          commands: all.length,
          p50: { value: round(percentile(all, 50), 3), unit: "ms" },
          p99: { value: round(percentile(all, 99), 3), unit: "ms" },
          max: { value: round(all[all.length - 1]!, 3), unit: "ms" },
          commands_per_second: { value: median(cmd[l]!.map((c) => c.commandsPerSecond)), unit: "commands/s (one in flight)", per_round: cmd[l]!.map((c) => c.commandsPerSecond) },
          daemon_cpu_per_command: { value: median(cmd[l]!.map((c) => c.daemonCpuUsPerCommand)), unit: "µs", per_round: cmd[l]!.map((c) => c.daemonCpuUsPerCommand) },
          loader_cpu_per_command: { value: median(cmd[l]!.map((c) => c.loaderCpuUsPerCommand)), unit: "µs", per_round: cmd[l]!.map((c) => c.loaderCpuUsPerCommand) },
        },
        bulk_update_10k: {
          repetitions: b.length,
          p50: { value: round(percentile(b, 50), 2), unit: "ms" },
          p99: { value: round(percentile(b, 99), 2), unit: "ms" },
          all: { value: bulk[l]!.map((x) => round(x, 2)), unit: "ms" },
        },
      };
    };
    const results: Record<string, ReturnType<typeof summary>> = {};
    for (const l of labels) results[l] = summary(l);
    const comparison = secondOverFirst(labels, results, {
      command_p50: (r) => r.single_command.p50.value,
      command_p99: (r) => r.single_command.p99.value,
      commands_per_second: (r) => r.single_command.commands_per_second.value,
      daemon_cpu_per_command: (r) => r.single_command.daemon_cpu_per_command.value,
      bulk_update_10k_p50: (r) => r.bulk_update_10k.p50.value,
      bulk_update_10k_p99: (r) => r.bulk_update_10k.p99.value,
    });
    const output = {
      benchmark: "control-plane-before-after",
      finished_at: new Date().toISOString(),
      command: `node dist/bench/control-plane/daemon-path-bench.js ${buildArgs(args).join(" ")} --rounds ${args.rounds} --commands ${args.commands} --bulks ${args.bulks}`,
      machine: await machineRecord(loadAtStart, "a shared 2-vCPU VM; the SDK server (this process), the daemons and their loaders share its cores; compare the builds within this run (interleaved rounds, order alternating)"),
      builds: daemons.map((d) => ({ label: d.build.label, checkout: d.build.dir, cli: d.build.cli, loader: d.loaderExe })),
      setup: {
        path: "SDK ControlPlaneServer (this checkout) → gRPC stream → netfenced start of each checkout (control_plane.url) → command application → KernelFilter → its own loader child (map update acked) → CommandResult → the SDK promise resolves",
        attach: "Attach through the DaemonService on a veth of the bench netns; the control plane answers Subscribed with a one-entry SubscribedAck (allowlist 100.64.0.0/24, DNS disabled)",
        single_command: `${args.commands} commands per round, one in flight, AllowCidr / RemoveCidr of a /32 alternating; ${args.rounds} rounds, order alternating; p50/p99 over all rounds, commands/s and CPU per command the median of the rounds`,
        state_during_single_commands: args.keepBulkState ? "the 10,000-CIDR policy of the last BulkUpdate (--keep-bulk-state): every command persists a snapshot of that size" : "the one-entry policy (each round's BulkUpdates are followed by an untimed BulkUpdate back to it)",
        bulk_update_10k: `${args.bulks} BulkUpdates of 10,000 /28s per round (two sets alternating: each replaces the whole map)`,
      },
      results,
      comparison,
    };
    await writeJsonFile(args.out, output);
    console.log(JSON.stringify({ comparison, load: [output.machine.load_average_at_start.value, output.machine.load_average_at_end.value] }));
    console.log(`wrote ${args.out}`);
  } finally {
    for (const d of daemons) {
      await detachAndStop(d.daemon, d.id);
      await d.server.close(100).catch(() => undefined);
    }
  }
}

const inv = invocation(process.argv.slice(2));
const args = parseArgs(inv.options);
if (inv.inner) await inner(args, requireWorkdir(inv));
else {
  await runInNetns({
    script: import.meta.url, prefix: "nfcpba", rootError: "the benchmark needs root (network namespace, eBPF)",
    veths: args.builds.map((_, i) => [ifaceOf(i), `nfcpw${i}`] as const),
    workdirPrefix: "nf-cpbabench-",
  }, inv.options);
}
