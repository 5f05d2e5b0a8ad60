/**
 * Issue 13, scale: a full push of 500 attachments × 1,000 CIDRs by netfence-cp, as an operator
 * runs it. Usage (root, after `npm run build`): `flock /tmp/netfence-bench.lock node
 * dist/bench/daemon/scale-push.js [--attachments 500] [--cidrs 1000] [--cpu-prof DIR] [--out FILE]`
 * (--cpu-prof: the daemon runs with --cpu-prof, profile written to DIR when it stops).
 *
 * Inside a throwaway network namespace (private bpffs): the real `netfenced start` with a
 * data_dir (the journaled state store) and `control_plane.url` pointing at netfence-cp
 * (startNetfenceCp of control-plane-example, in this process: policy file, watcher, SDK server).
 * N cgroups of ours are attached through the DaemonService; netfence-cp answers each Subscribed
 * with the policy file's one-CIDR policy. Then:
 *   push 1  the policy file is rewritten with 1,000 CIDRs: the watcher reloads it and netfence-cp
 *           pushes one BulkUpdate per attachment, each awaiting its CommandResult (10 s timeout);
 *           measured from the file write to the reload's summary (all applied, none "not confirmed")
 *   push 2  another 1,000 CIDRs (each BulkUpdate replaces the whole map)
 *   resync  netfence-cp is stopped and started again on the same port: the daemon reconnects
 *           (its backoff), syncs, and netfence-cp reconciles every attachment with a BulkUpdate;
 *           measured from the new server listening to "daemon reconciled" (all confirmed)
 * For each: the daemon's peak RSS (VmHWM, reset before through /proc/PID/clear_refs) against its
 * RSS once settled, the bytes it wrote to storage (/proc/PID/io write_bytes, the state store
 * being all it writes at log level warn) against the state's size on disk.
 */
import { readFile, stat, writeFile } from "node:fs/promises";
import { Writable } from "node:stream";
import path from "node:path";
import pino from "pino";
import { startNetfenceCp, type RunningNetfenceCp } from "../../control-plane-example/src/netfence-cp.js";
import type { PushSummary } from "../../control-plane-example/src/policy-file/policy-controller.js";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { DaemonClient } from "../../cli/src/daemon-client.js";
import { BenchDaemon, procCpuMs } from "./daemon-process.js";
import { CgroupTargets } from "./bench-targets.js";
import { tearDownCgroupBench } from "./cleanup.js";
import { cgroup2InNetns } from "../lib/cgroup-mount.js";
import { clamped, walkArgs } from "../lib/bench-args.js";
import { loadAverage, machineRecord, writeJsonFile } from "../lib/run-record.js";
import { percentile, round } from "../lib/stats.js";
import { invocation, mountPrivateBpffs, requireWorkdir, runInNetns } from "../lib/netns-runner.js";

interface Args { attachments: number; cidrs: number; cpuProf: string | null; out: string }

function parseArgs(argv: string[]): Args {
  const args: Args = { attachments: 500, cidrs: 1000, cpuProf: null, out: path.join(projectRoot(), "bench", "results", "daemon-scale-push.json") };
  walkArgs(argv, (a, value) => {
    if (a === "--attachments") args.attachments = clamped(value(), 1, 2000);
    else if (a === "--cidrs") args.cidrs = clamped(value(), 1, 20_000);
    else if (a === "--out") args.out = path.resolve(value());
    else if (a === "--cpu-prof") args.cpuProf = path.resolve(value());
    else return false;
    return true;
  });
  return args;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function policyYaml(version: number, cidrs: number): string {
  const allow = version === 0 ? ["100.64.0.0/24"] : Array.from({ length: cidrs }, (_, i) => `${10 + version}.${(i >> 8) & 255}.${i & 255}.0/24`);
  return `defaults:\n  mode: block-all\nrules:\n  - name: all\n    match: {}\n    mode: allowlist\n    allow:\n${allow.map((c) => `      - ${c}\n`).join("")}`;
}

async function ioWriteBytes(pid: number): Promise<number> {
  const m = /^write_bytes:\s+(\d+)/m.exec(await readFile(`/proc/${pid}/io`, "utf8"));
  return Number(m?.[1] ?? 0);
}

async function memKiB(pid: number): Promise<{ rss: number; hwm: number }> {
  const text = await readFile(`/proc/${pid}/status`, "utf8");
  const kib = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? 0);
  return { rss: kib("VmRSS"), hwm: kib("VmHWM") };
}

async function stateBytes(dataDir: string): Promise<{ base: number; journal: number }> {
  const size = async (f: string): Promise<number> => (await stat(path.join(dataDir, f)).catch(() => ({ size: 0 }))).size;
  return { base: await size("state.json"), journal: await size("state.journal") };
}

/** A pino destination that hands every log line (parsed) to `onLine`. */
function lineSink(onLine: (o: Record<string, unknown>) => void): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split("\n")) if (l !== "") onLine(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
}

interface Phase {
  ms: number;
  summary: PushSummary | Record<string, unknown>;
  peak_rss_mib: number;
  settled_rss_mib: number;
  peak_over_settled: number;
  bytes_written: number;
  state_bytes_after: { base: number; journal: number };
  bytes_written_over_state: number;
  daemon_cpu_ms: number;
}

async function inner(args: Args, workdir: string): Promise<void> {
  await mountPrivateBpffs();
  const loadAtStart = loadAverage();
  const cg = await cgroup2InNetns(workdir);
  const targets = new CgroupTargets(cg.root, `scale-${process.pid}`);
  const policyPath = path.join(workdir, "policy.yaml");
  await writeFile(policyPath, policyYaml(0, args.cidrs));
  let reload: ((r: { ok: true; summary: PushSummary } | { ok: false; error: string }) => void) | null = null;
  let reconciled: ((o: Record<string, unknown>) => void) | null = null;
  let syncedAt = 0;
  const cpLogger = pino({ level: "info" }, lineSink((o) => {
    if (o["msg"] === "daemon synced") syncedAt = performance.now();
    if (o["msg"] === "daemon reconciled") reconciled?.(o);
  }));
  const startCp = (port: number): Promise<RunningNetfenceCp> =>
    startNetfenceCp({ listen: `127.0.0.1:${port}`, policyPath, logger: cpLogger, debounceMs: 20, onReload: (r) => reload?.(r) });
  let cp = await startCp(0);
  const port = cp.port;
  const daemon = new BenchDaemon({
    cli: path.join(projectRoot(), "cli/dist/index.js"),
    dir: workdir,
    pinRoot: `/sys/fs/bpf/netfence-scale-${process.pid}`,
    portMin: 20_000,
    portMax: 20_000 + args.attachments + 10,
    logLevel: "warn",
    defaultPolicyYaml: "",
    extraYaml: `control_plane: { url: "127.0.0.1:${port}", subscribe_ack_timeout: 30s, heartbeat_interval: 30s }`,
    nodeArgs: args.cpuProf === null ? [] : ["--cpu-prof", `--cpu-prof-dir=${args.cpuProf}`],
  });
  const ids: string[] = [];
  try {
    const dirs = await targets.create(args.attachments);
    daemon.spawn();
    await daemon.waitReady(120_000);
    const pid = daemon.pid!;
    const client = new DaemonClient(daemon.socket);
    const attachMs: number[] = [];
    try {
      for (const dir of dirs) {
        const t0 = performance.now();
        ids.push((await client.attach({ target: { case: "cgroupPath", value: dir }, metadata: {} })).id);
        attachMs.push(performance.now() - t0);
      }
    } finally {
      client.close();
    }
    console.log(`attached ${ids.length} cgroups (p50 ${round(percentile([...attachMs].sort((a, b) => a - b), 50), 1)} ms) · load ${loadAverage()[0]}`);
    await sleep(2000);

    const measure = async (what: string, act: () => Promise<{ summary: PushSummary | Record<string, unknown>; ms: number }>): Promise<Phase> => {
      await writeFile(`/proc/${pid}/clear_refs`, "5"); // VmHWM := VmRSS
      const io0 = await ioWriteBytes(pid);
      const cpu0 = procCpuMs(pid);
      const { summary, ms } = await act();
      const cpu = procCpuMs(pid) - cpu0;
      await sleep(3000); // the state write that follows the last CommandResult, GC
      const mem = await memKiB(pid);
      const written = (await ioWriteBytes(pid)) - io0;
      const state = await stateBytes(daemon.dataDir);
      const phase: Phase = {
        ms: round(ms, 1), summary,
        peak_rss_mib: round(mem.hwm / 1024, 1), settled_rss_mib: round(mem.rss / 1024, 1), peak_over_settled: round(mem.hwm / mem.rss, 2),
        bytes_written: written, state_bytes_after: state, bytes_written_over_state: round(written / Math.max(1, state.base + state.journal), 2),
        daemon_cpu_ms: round(cpu, 0),
      };
      console.log(`${what}: ${phase.ms} ms ${JSON.stringify(summary)} · peak ${phase.peak_rss_mib} MiB / settled ${phase.settled_rss_mib} MiB · wrote ${round(written / 1e6, 1)} MB (state ${round((state.base + state.journal) / 1e6, 1)} MB) · load ${loadAverage()[0]}`);
      return phase;
    };
    const push = (version: number) => async () => {
      const done = new Promise<{ ok: true; summary: PushSummary } | { ok: false; error: string }>((r) => (reload = r));
      const t0 = performance.now();
      await writeFile(policyPath, policyYaml(version, args.cidrs));
      const r = await Promise.race([done, sleep(120_000).then(() => ({ ok: false as const, error: "no reload within 120 s" }))]);
      if (!r.ok) throw new Error(`push ${version}: ${r.error}`);
      return { summary: r.summary, ms: performance.now() - t0 };
    };
    const push1 = await measure("push 1 (1 → 1,000 CIDRs each)", push(1));
    const push2 = await measure("push 2 (1,000 → another 1,000 each)", push(2));
    let syncMs = 0;
    const resync = await measure("resync after a netfence-cp restart", async () => {
      await cp.stop();
      await sleep(1000);
      const done = new Promise<Record<string, unknown>>((r) => (reconciled = r));
      cp = await startCp(port);
      const t0 = performance.now();
      const o = await Promise.race([done, sleep(120_000).then(() => ({ error: "not reconciled within 120 s" }))]);
      syncMs = syncedAt - t0;
      const { pushed, applied, rejected, unconfirmed, unchanged } = o as Record<string, unknown>;
      return { summary: { pushed, applied, rejected, unconfirmed, unchanged, error: (o as { error?: string }).error }, ms: performance.now() - t0 };
    });
    const output = {
      benchmark: "daemon-scale-push",
      finished_at: new Date().toISOString(),
      command: `node dist/bench/daemon/scale-push.js --attachments ${args.attachments} --cidrs ${args.cidrs}`,
      machine: await machineRecord(loadAtStart, "a shared 2-vCPU VM; netfence-cp (this process), the daemon and its loader share its cores"),
      setup: {
        path: "policy file rewritten → netfence-cp (watcher, PolicyController, SDK server) → one BulkUpdate per attachment on the gRPC stream, each awaiting its CommandResult (10 s) → netfenced (wire, validation, plan, loader replace, CommandResult; journaled state store)",
        attachments: `${args.attachments} cgroups of ours attached through the DaemonService, each acked with a one-CIDR policy`,
        cidrs_per_attachment: args.cidrs,
        bytes_written: "/proc/<daemon>/io write_bytes over the phase and 3 s after it (log level warn: the state store is what the daemon writes)",
        rss: "VmHWM after /proc/<daemon>/clear_refs 5 before the phase (peak) against VmRSS 3 s after it (settled)",
      },
      results: {
        attach_ms_p50: round(percentile([...attachMs].sort((a, b) => a - b), 50), 1),
        push_1: push1,
        push_2: push2,
        resync: { ...resync, listening_to_sync_ms: round(syncMs, 1) },
      },
    };
    await writeJsonFile(args.out, output);
    console.log(`wrote ${args.out}`);
  } finally {
    await cp.stop().catch(() => undefined);
    await tearDownCgroupBench(daemon, ids, targets, cg);
  }
}

const inv = invocation(process.argv.slice(2));
const args = parseArgs(inv.options);
if (inv.inner) await inner(args, requireWorkdir(inv));
else await runInNetns({ script: import.meta.url, prefix: "nfscale", rootError: "the benchmark needs root (network namespace, cgroups, eBPF)", veths: [], workdirPrefix: "nf-scale-" }, inv.options);
