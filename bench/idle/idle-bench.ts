/**
 * Idle cost of a daemon with many attachments, and how fast it notices a vanished target
 * (issue 13). Two builds side by side in the same run — by default the checkout given with
 * `--before DIR` (e.g. the commit before the event-driven watchers, built) and this checkout —
 * each a real `netfenced start` in its own network namespace holding N/2 veth pairs (tcx on
 * one end) and N/2 cgroups under a parent of its own (cgroup_skb egress), no control plane,
 * default policy allowlist with one entry. Both daemons idle at the same time, so they see the
 * same load:
 * - CPU: utime+stime of the daemon and its children (loader, link monitor) from /proc/PID/stat
 *   over --window seconds, as % of one core;
 * - system calls: `strace -c -f -p PID` for --strace seconds (one daemon after the other);
 * - target loss: `ip link del` of a veth / `rmdir` of a cgroup → the daemon's "attached target
 *   vanished" log line (its pino time), --losses of each kind, builds alternating.
 * The daemons run as `ip netns exec NS sh -c 'mount cgroup2 + a private bpffs; exec node …'`:
 * their pins live in a bpffs that disappears with them. Clean-up (also on failure and SIGINT):
 * daemons stopped by PID, namespaces deleted, cgroups and temp dirs removed.
 *
 *   sudo node dist/bench/idle/idle-bench.js --before /tmp/old-checkout [--attachments 500] [--window 60]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync, existsSync, openSync, closeSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { DaemonClient } from "../../cli/src/daemon-client.js";
import { findCgroup2Mount } from "../../daemon/src/attachments/target.js";
import { run } from "../lib/run-command.js";
import { percentile } from "../lib/stats.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const CLK_TCK = 100;

interface Opts { before: string | null; after: string; attachments: number; windowS: number; straceS: number; losses: number; out: string }

function parseOpts(argv: readonly string[]): Opts {
  const o: Opts = { before: null, after: ROOT, attachments: 500, windowS: 60, straceS: 10, losses: 10, out: path.join(ROOT, "bench/results/idle.json") };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    const next = (): string => argv[++i] ?? "";
    if (v === "--before") o.before = path.resolve(next());
    else if (v === "--after") o.after = path.resolve(next());
    else if (v === "--attachments") o.attachments = Math.max(2, Math.min(2000, Number(next())));
    else if (v === "--window") o.windowS = Math.max(5, Math.min(300, Number(next())));
    else if (v === "--strace") o.straceS = Math.max(2, Math.min(60, Number(next())));
    else if (v === "--losses") o.losses = Math.max(1, Math.min(50, Number(next())));
    else if (v === "--out") o.out = path.resolve(next());
    else throw new Error(`unknown argument "${v}"`);
  }
  return o;
}

/** One build's daemon in its own namespace, with its targets. */
class Side {
  readonly ns: string;
  readonly dir: string;
  readonly socket: string;
  readonly log: string;
  readonly cgParent: string;
  readonly cgParentInDaemon: string;
  child: ChildProcess | null = null;
  readonly ids = new Map<string, string>(); // target → attachment id

  constructor(readonly label: string, readonly checkout: string, readonly n: number, cg2: string) {
    this.ns = `nfidle${label.slice(0, 3)}${process.pid}`;
    this.dir = mkdtempSync(path.join(os.tmpdir(), `nfidle-${label}-`));
    this.socket = path.join(this.dir, "netfence.sock");
    this.log = path.join(this.dir, "daemon.log");
    const name = `nfidle-${label}-${process.pid}`;
    this.cgParent = path.join(cg2, name);
    this.cgParentInDaemon = `/sys/fs/cgroup/${name}`;
  }

  get veths(): number { return Math.floor(this.n / 2); }
  get cgroups(): number { return this.n - this.veths; }
  veth(i: number): string { return `iv${i}a`; }

  async setUp(): Promise<void> {
    await run("ip", ["netns", "add", this.ns]);
    const batch = ["link set lo up"];
    for (let i = 0; i < this.veths; i++) batch.push(`link add iv${i}a type veth peer name iv${i}b`, `link set iv${i}a up`, `link set iv${i}b up`);
    writeFileSync(path.join(this.dir, "links.batch"), batch.join("\n") + "\n");
    await run("ip", ["-n", this.ns, "-batch", path.join(this.dir, "links.batch")]);
    mkdirSync(this.cgParent);
    for (let i = 0; i < this.cgroups; i++) mkdirSync(path.join(this.cgParent, `c${i}`));
    const cfg = [
      `socket: ${this.socket}`,
      `data_dir: ${path.join(this.dir, "data")}`,
      "log_level: info",
      "bpf: { pin_root: /sys/fs/bpf/nfidle }",
      `dns: { listen_addr: 127.0.0.1, port_min: 40000, port_max: ${40000 + this.n + 100}, upstream: "127.0.0.1:9", port_guard: false }`,
      'default_policy: { mode: allowlist, allow_cidrs: ["192.0.2.1/32"] }',
      "",
    ].join("\n");
    writeFileSync(path.join(this.dir, "netfence.yaml"), cfg);
    const cli = path.join(this.checkout, "cli/dist/index.js");
    const fd = openSync(this.log, "a");
    // ip netns exec remounts /sys: cgroup2 and a private bpffs are mounted again inside.
    this.child = spawn("ip", ["netns", "exec", this.ns, "sh", "-c",
      'mount -t cgroup2 none /sys/fs/cgroup && mount -t bpf bpf /sys/fs/bpf && exec "$0" "$1" start --config "$2"', process.execPath, cli, path.join(this.dir, "netfence.yaml")],
      { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`${this.label}: daemon exited: ${readFileSync(this.log, "utf8").slice(-2000)}`);
      if (existsSync(this.socket)) {
        const c = new DaemonClient(this.socket, 2000);
        try { await c.getStatus(); break; } catch { /* not yet */ } finally { c.close(); }
      }
      if (Date.now() > deadline) throw new Error(`${this.label}: daemon not ready`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const client = new DaemonClient(this.socket, 60_000);
    try {
      const jobs: Array<() => Promise<void>> = [];
      for (let i = 0; i < this.veths; i++) {
        const v = this.veth(i);
        jobs.push(async () => { this.ids.set(v, (await client.attach({ target: { case: "interfaceName", value: v } })).id); });
      }
      for (let i = 0; i < this.cgroups; i++) {
        const c = `c${i}`;
        jobs.push(async () => { this.ids.set(c, (await client.attach({ target: { case: "cgroupPath", value: `${this.cgParentInDaemon}/${c}` } })).id); });
      }
      for (let i = 0; i < jobs.length; i += 4) await Promise.all(jobs.slice(i, i + 4).map((j) => j()));
      const count = (await client.getStatus()).attachmentCount;
      if (count !== this.n) throw new Error(`${this.label}: ${count} attachments, expected ${this.n}`);
    } finally {
      client.close();
    }
  }

  /** PIDs of the daemon and every descendant (loader, link monitor). */
  tree(): number[] {
    const out: number[] = [];
    const walk = (pid: number): void => {
      out.push(pid);
      for (const t of safeReaddir(`/proc/${pid}/task`)) {
        for (const c of safeRead(`/proc/${pid}/task/${t}/children`).split(/\s+/).filter(Boolean)) walk(Number(c));
      }
    };
    if (this.child?.pid !== undefined) walk(this.child.pid);
    return out;
  }

  /** utime+stime ticks of the daemon's process tree. */
  cpuTicks(): { total: number; byComm: Record<string, number> } {
    let total = 0;
    const byComm: Record<string, number> = {};
    for (const pid of this.tree()) {
      const stat = safeRead(`/proc/${pid}/stat`);
      const close = stat.lastIndexOf(")");
      if (close < 0) continue;
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const f = stat.slice(close + 2).split(" ");
      const t = Number(f[11]) + Number(f[12]); // fields 14, 15 (utime, stime)
      total += t;
      byComm[comm] = (byComm[comm] ?? 0) + t;
    }
    return { total, byComm };
  }

  async strace(seconds: number): Promise<{ total_calls: number; top: Array<{ syscall: string; calls: number }> }> {
    const out = path.join(this.dir, "strace.txt");
    await new Promise<void>((resolve) => {
      const s = spawn("strace", ["-c", "-f", "-o", out, "-p", String(this.child!.pid)], { stdio: "ignore" });
      setTimeout(() => s.kill("SIGINT"), seconds * 1000);
      s.on("exit", () => resolve());
    });
    const rows = safeRead(out).split("\n").map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 5 && /^\d/.test(f[0]!));
    const top = rows.map((f) => ({ syscall: f[f.length - 1]!, calls: Number(f[3]) })).filter((r) => r.syscall !== "total" && Number.isFinite(r.calls));
    top.sort((a, b) => b.calls - a.calls);
    // Every row: % time, seconds, usecs/call, calls, [errors,] syscall (the total row included).
    const total = top.reduce((sum, r) => sum + r.calls, 0);
    return { total_calls: total, top: top.slice(0, 8) };
  }

  /** Removes one target and returns ms until the daemon logged it vanished. */
  async loss(kind: "veth" | "cgroup", i: number): Promise<number> {
    const target = kind === "veth" ? this.veth(i) : `c${i}`;
    const id = this.ids.get(target);
    if (id === undefined) throw new Error(`${this.label}: no attachment for ${target}`);
    const t0 = Date.now();
    if (kind === "veth") await run("ip", ["-n", this.ns, "link", "del", target]);
    else rmdirSync(path.join(this.cgParent, target));
    const deadline = Date.now() + 10_000;
    for (;;) {
      for (const line of safeRead(this.log).split("\n")) {
        if (line.includes(`"attachmentId":"${id}"`) && line.includes("attached target vanished")) {
          return (JSON.parse(line) as { time: number }).time - t0;
        }
      }
      if (Date.now() > deadline) throw new Error(`${this.label}: ${target} removal not noticed within 10 s`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async cleanUp(): Promise<void> {
    const c = this.child;
    if (c?.pid !== undefined && c.exitCode === null) {
      const exited = new Promise((r) => c.once("exit", r));
      c.kill("SIGTERM");
      const t = setTimeout(() => c.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(t);
    }
    const pids = (await run("ip", ["netns", "pids", this.ns], true)).split(/\s+/).filter((p) => /^\d+$/.test(p));
    for (const p of pids) try { process.kill(Number(p), "SIGKILL"); } catch { /* gone */ }
    await run("ip", ["netns", "del", this.ns], true);
    for (const e of safeReaddir(this.cgParent)) try { rmdirSync(path.join(this.cgParent, e)); } catch { /* not a cgroup dir */ }
    try { rmdirSync(this.cgParent); } catch { /* already gone */ }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function safeRead(p: string): string { try { return readFileSync(p, "utf8"); } catch { return ""; } }
function safeReaddir(p: string): string[] { try { return readdirSync(p); } catch { return []; } }
const loadavg = (): string => safeRead("/proc/loadavg").trim();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const r2 = (x: number): number => Math.round(x * 100) / 100;

async function main(): Promise<void> {
  const o = parseOpts(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error("run as root");
  if (o.before === null) throw new Error("--before DIR (a built checkout to compare with) is required");
  const cg2 = findCgroup2Mount();
  if (cg2 === null) throw new Error("no cgroup2 mount");
  const sides = [new Side("before", o.before, o.attachments, cg2), new Side("after", o.after, o.attachments, cg2)];
  let cleaning = false;
  const cleanAll = async (): Promise<void> => { if (cleaning) return; cleaning = true; for (const s of sides) await s.cleanUp(); };
  process.once("SIGINT", () => void cleanAll().finally(() => process.exit(130)));
  process.once("SIGTERM", () => void cleanAll().finally(() => process.exit(143)));
  const bound = setTimeout(() => { console.error("idle bench: 15-minute bound reached"); void cleanAll().finally(() => process.exit(1)); }, 15 * 60_000);
  try {
    const loadStart = loadavg();
    for (const s of sides) {
      const t0 = Date.now();
      await s.setUp();
      console.log(`${s.label}: ${s.n} attachments in ${Date.now() - t0} ms`);
    }
    await sleep(10_000); // settle: start-up work, first sweeps
    const loadBeforeWindow = loadavg();
    const c0 = sides.map((s) => s.cpuTicks());
    await sleep(o.windowS * 1000);
    const c1 = sides.map((s) => s.cpuTicks());
    const loadAfterWindow = loadavg();
    const idle = sides.map((s, i) => {
      const ticks = c1[i]!.total - c0[i]!.total;
      const byComm: Record<string, number> = {};
      for (const [k, v] of Object.entries(c1[i]!.byComm)) byComm[k] = r2(((v - (c0[i]!.byComm[k] ?? 0)) / CLK_TCK / o.windowS) * 100);
      return { build: s.label, checkout: s.checkout, cpu_ticks: ticks, cpu_percent_of_one_core: r2((ticks / CLK_TCK / o.windowS) * 100), by_process_percent: byComm };
    });
    console.log(`idle CPU over ${o.windowS} s: ${idle.map((x) => `${x.build} ${x.cpu_percent_of_one_core} %`).join(", ")}`);
    const syscalls = [];
    for (const s of sides) syscalls.push({ build: s.label, seconds: o.straceS, ...(await s.strace(o.straceS)) });
    console.log(`syscalls in ${o.straceS} s: ${syscalls.map((x) => `${x.build} ${x.total_calls}`).join(", ")}`);
    const lat: Record<string, { veth: number[]; cgroup: number[] }> = { before: { veth: [], cgroup: [] }, after: { veth: [], cgroup: [] } };
    for (let i = 0; i < o.losses; i++) {
      for (const kind of ["veth", "cgroup"] as const) {
        for (const s of sides) {
          lat[s.label]![kind].push(await s.loss(kind, i));
          await sleep(50 + Math.floor(Math.random() * 200)); // not in phase with a poll period
        }
      }
    }
    const latSummary = (xs: number[]) => ({ n: xs.length, p50_ms: percentile(xs, 50), p99_ms: percentile(xs, 99), max_ms: Math.max(...xs), samples_ms: xs });
    const losses = Object.fromEntries(Object.entries(lat).map(([k, v]) => [k, { veth_ip_link_del: latSummary(v.veth), cgroup_rmdir: latSummary(v.cgroup) }]));
    console.log(`target loss p50: ${Object.entries(losses).map(([k, v]) => `${k} veth ${v.veth_ip_link_del.p50_ms} ms, cgroup ${v.cgroup_rmdir.p50_ms} ms`).join("; ")}`);
    const result = {
      bench: "idle", issue: 13,
      what: "netfenced with N attachments (N/2 veths in its own netns, tcx; N/2 cgroups, cgroup_skb egress), no control plane, default policy allowlist with one entry; two builds idling side by side",
      command: `node dist/bench/idle/idle-bench.js --before ${o.before} --attachments ${o.attachments} --window ${o.windowS} --strace ${o.straceS} --losses ${o.losses}`,
      date: new Date().toISOString(), host: os.hostname(), cpus: os.cpus().length, kernel: os.release(), node: process.version,
      loadavg: { start: loadStart, before_window: loadBeforeWindow, after_window: loadAfterWindow, end: loadavg() },
      attachments: o.attachments, window_s: o.windowS, target: "≤ 0.5 % of one core at 500 attachments",
      idle_cpu: idle, syscalls, target_loss_latency: losses,
    };
    mkdirSync(path.dirname(o.out), { recursive: true });
    writeFileSync(o.out, JSON.stringify(result, null, 2) + "\n");
    console.log(`wrote ${o.out}`);
  } finally {
    clearTimeout(bound);
    await cleanAll();
  }
}

await main();
