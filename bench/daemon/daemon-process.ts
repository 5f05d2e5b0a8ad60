import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { DaemonClient } from "../../cli/src/daemon-client.js";

/**
 * The real `netfenced start` (cli/dist/index.js) as a child process for the benchmark: its
 * own config file (temp socket and data_dir, a unique bpffs pin root, a wide DNS port range, the
 * local default policy, no control plane), JSON logs to a file. Readiness is what a client sees:
 * GetStatus answers (the daemon binds its socket first and holds calls until it is ready).
 */

export interface BenchDaemonOptions {
  readonly cli: string;
  readonly dir: string;
  readonly pinRoot: string;
  readonly portMin: number;
  readonly portMax: number;
  /** YAML of the default_policy block (no control plane: every attachment gets it). */
  readonly defaultPolicyYaml: string;
  readonly logLevel: string;
  /**
   * The `dns:` block (default: a discard upstream, the port guard off). The DNS port guard stays
   * off in benchmarks: it would cover the whole cgroup2 hierarchy of this machine.
   */
  readonly dnsYaml?: string;
  /** More top-level YAML (e.g. a `metrics:` block). */
  readonly extraYaml?: string;
  /** Node options before the CLI script (e.g. --cpu-prof, which NODE_OPTIONS does not allow). */
  readonly nodeArgs?: readonly string[];
  /** Extra environment variables of the daemon process (on top of this process's). */
  readonly env?: Readonly<Record<string, string>>;
}

export interface ProcStatus {
  readonly vmRssKiB: number;
  readonly vmHwmKiB: number;
}

export class BenchDaemon {
  readonly socket: string;
  readonly configFile: string;
  readonly logFile: string;
  readonly dataDir: string;
  private child: ChildProcess | null = null;
  private retired = false;

  constructor(private readonly opts: BenchDaemonOptions) {
    this.socket = path.join(opts.dir, "netfence.sock");
    this.configFile = path.join(opts.dir, "netfence.yaml");
    this.logFile = path.join(opts.dir, "daemon.log");
    this.dataDir = path.join(opts.dir, "data");
    writeFileSync(
      this.configFile,
      [
        `socket: ${this.socket}`,
        `data_dir: ${this.dataDir}`,
        `log_level: ${opts.logLevel}`,
        `bpf: { pin_root: ${opts.pinRoot} }`,
        // The upstream is a local discard port: no DNS query of this benchmark leaves the host.
        opts.dnsYaml ?? `dns: { listen_addr: 127.0.0.1, port_min: ${opts.portMin}, port_max: ${opts.portMax}, upstream: "127.0.0.1:9", port_guard: false }`,
        opts.defaultPolicyYaml,
        opts.extraYaml ?? "",
        "",
      ].join("\n"),
    );
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Spawns the daemon; resolves when the process exists (not when it is ready). */
  spawn(): void {
    if (this.retired) throw new Error("the benchmark daemon was cleaned up; not starting it again");
    if (this.running) throw new Error("the benchmark daemon is already running");
    const fd = openSync(this.logFile, "a");
    const child = spawn(process.execPath, [...(this.opts.nodeArgs ?? []), this.opts.cli, "start", "--config", this.configFile], {
      stdio: ["ignore", fd, fd],
      env: { ...process.env, ...this.opts.env },
    });
    closeSync(fd);
    this.child = child;
  }

  /**
   * Polls GetStatus until it answers (a fresh client per attempt: a client created while the
   * socket was missing or stale would sit in grpc-js reconnect backoff). Returns the status.
   */
  async waitReady(timeoutMs: number, pollMs = 5): Promise<{ attachmentCount: number; daemonId: string }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running) throw new Error(`netfenced exited (${this.child?.exitCode ?? this.child?.signalCode}):\n${this.logTail()}`);
      if (existsSync(this.socket)) {
        const client = new DaemonClient(this.socket, Math.max(100, deadline - Date.now()));
        try {
          const s = await client.getStatus();
          return { attachmentCount: s.attachmentCount, daemonId: s.daemonId };
        } catch {
          // not listening yet (stale socket of the previous run, or just bound)
        } finally {
          client.close();
        }
      }
      if (Date.now() > deadline) throw new Error(`netfenced not ready within ${timeoutMs} ms:\n${this.logTail()}`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** After the clean-up: no further spawn (a measurement still running must not start a daemon nobody stops). */
  retire(): void {
    this.retired = true;
  }

  /** Sends `sig` and waits for the exit; SIGKILL after `graceMs`. Returns ms from signal to exit. */
  async stop(sig: "SIGTERM" | "SIGKILL", graceMs = 15_000): Promise<number> {
    const child = this.child;
    if (child === null || !this.running) return 0;
    const t0 = performance.now();
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill(sig);
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
    this.child = null;
    return performance.now() - t0;
  }

  /** VmRSS / VmHWM of the daemon process (Node), from /proc/<pid>/status. */
  status(): ProcStatus {
    if (this.pid === null) throw new Error("the benchmark daemon is not running");
    return procStatus(this.pid);
  }

  /** PIDs of the daemon's direct children (the loader helper). */
  childPids(): number[] {
    if (this.pid === null) return [];
    const out: number[] = [];
    try {
      for (const task of readFileSync(`/proc/${this.pid}/task/${this.pid}/children`, "utf8").trim().split(/\s+/)) {
        if (task !== "") out.push(Number(task));
      }
    } catch {
      // process gone
    }
    return out;
  }

  /**
   * Epoch-ms times of the start-up milestones the daemon logs ("netfenced starting", "state
   * restored", "netfenced ready") for process `pid`; null where the line is missing.
   */
  startupMilestones(pid: number): { starting: number | null; restored: number | null; ready: number | null } {
    const out = { starting: null as number | null, restored: null as number | null, ready: null as number | null };
    const text = existsSync(this.logFile) ? readFileSync(this.logFile, "utf8") : "";
    for (const line of text.split("\n")) {
      if (!line.includes(`"pid":${pid},`)) continue;
      const key = line.includes('"msg":"netfenced starting"') ? "starting" : line.includes('"msg":"state restored"') ? "restored" : line.includes('"msg":"netfenced ready"') ? "ready" : null;
      if (key === null) continue;
      const t = /"time":(\d+)/.exec(line);
      if (t) out[key] = Number(t[1]);
    }
    return out;
  }

  logTail(chars = 3000): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, "utf8").slice(-chars) : "";
  }
}

let clockTicks: number | null = null;

/** CPU time (user + system) a process has used so far, in ms, from /proc/<pid>/stat. */
export function procCpuMs(pid: number): number {
  clockTicks ??= Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks;
}

export function procStatus(pid: number): ProcStatus {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, "m").exec(text);
    if (m === null) throw new Error(`no ${key} in /proc/${pid}/status`);
    return Number(m[1]);
  };
  return { vmRssKiB: kib("VmRSS"), vmHwmKiB: kib("VmHWM") };
}
