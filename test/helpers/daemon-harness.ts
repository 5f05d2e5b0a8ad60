import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmdirSync, rmSync, statSync, writeFileSync, closeSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { findCgroup2Mount } from "../../daemon/src/attachments/target.js";

/**
 * Runs the real `netfenced` binary (cli/dist/index.js) as a child process for integration
 * tests: its own socket, data_dir, DNS port range and bpffs pin root (under /sys/fs/bpf, given by
 * the Sandbox), JSON logs captured to a file. `cli()` runs the real CLI against it.
 * The DNS port guard (dns.port_guard, on by default: the whole cgroup2 hierarchy) is pointed at a
 * fresh empty cgroup of the daemon's own, `guardCgroup`: a test must never guard the root cgroup.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CLI = path.join(ROOT, "cli", "dist", "index.js");

/** Builds the packages when the CLI is missing or older than a source file (tsc emits even with type errors elsewhere). */
export function ensureBuilt(): void {
  const newest = (dir: string): number => {
    let t = 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      t = Math.max(t, e.isDirectory() ? newest(p) : e.name.endsWith(".ts") ? statSync(p).mtimeMs : 0);
    }
    return t;
  };
  const src = Math.max(...["proto/src", "proto/gen", "daemon/src", "cli/src"].map((d) => newest(path.join(ROOT, d))));
  if (existsSync(CLI) && statSync(CLI).mtimeMs >= src) return;
  spawnSync(path.join(ROOT, "node_modules", ".bin", "tsc"), ["-b", path.join(ROOT, "tsconfig.build.json")], { stdio: "ignore", timeout: 180_000 });
  if (!existsSync(CLI)) throw new Error(`cannot build ${CLI}: run \`npm run build\``);
}

export interface CliResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

export function runCli(args: readonly string[], timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`netfenced ${args.join(" ")} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code: code ?? 1 });
    });
  });
}

let portBlock = 0;

export interface DaemonOptions {
  readonly pinRoot: string;
  /** Extra YAML appended to the generated config (e.g. a default_policy block). */
  readonly yaml?: string;
  readonly ports?: number;
  /** argv prefix the daemon runs under, e.g. ["setpriv", "--bounding-set=-all,+bpf"]. */
  readonly wrap?: readonly string[];
  /** Extra environment of the daemon (e.g. NOTIFY_SOCKET). */
  readonly env?: Readonly<Record<string, string>>;
  /** Run it in a process group of its own (pgid = its pid), as systemd does with a unit's processes. */
  readonly ownProcessGroup?: boolean;
  /** Extra arguments after `start --config FILE` (e.g. --no-restore). */
  readonly startArgs?: readonly string[];
  /** bpf.attach_method (default: auto). */
  readonly attachMethod?: "auto" | "tcx" | "clsact";
}

export class DaemonProcess {
  readonly dir: string;
  readonly socket: string;
  readonly configFile: string;
  readonly logFile: string;
  readonly portMin: number;
  /** The cgroup the daemon's DNS port guard is attached to (ours, empty unless a test moves processes in). */
  readonly guardCgroup: string;
  private child: ChildProcess | null = null;

  constructor(readonly opts: DaemonOptions) {
    ensureBuilt();
    this.dir = mkdtempSync(path.join(os.tmpdir(), "nf-daemon-"));
    this.guardCgroup = testGuardCgroup(path.basename(this.dir));
    this.socket = path.join(this.dir, "netfence.sock");
    this.configFile = path.join(this.dir, "netfence.yaml");
    this.logFile = path.join(this.dir, "daemon.log");
    const ports = Math.min(opts.ports ?? 50, 330);
    // Distinct ranges per test process and per daemon, away from the default 11000-11500.
    this.portMin = 20000 + (process.pid % 40) * 1000 + (portBlock++ % 3) * 330;
    writeFileSync(
      this.configFile,
      [
        `socket: ${this.socket}`,
        `data_dir: ${path.join(this.dir, "data")}`,
        "log_level: debug",
        `bpf: { pin_root: ${opts.pinRoot}${opts.attachMethod ? `, attach_method: ${opts.attachMethod}` : ""} }`,
        `dns: { listen_addr: 127.0.0.1, port_min: ${this.portMin}, port_max: ${this.portMin + ports - 1}, upstream: "127.0.0.1:9", port_guard_cgroup: "${this.guardCgroup}" }`,
        opts.yaml ?? "",
      ].join("\n"),
    );
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts `netfenced start` and waits for "netfenced ready" in its log; `inCgroup`: run it as a member of that cgroup. */
  async start(timeoutMs = 30_000, inCgroup?: string): Promise<void> {
    const fd = openSync(this.logFile, "a");
    const base = [...(this.opts.wrap ?? []), process.execPath, CLI, "start", "--config", this.configFile, ...(this.opts.startArgs ?? [])];
    // inCgroup: join that cgroup first (the daemon runs as one of its members).
    const argv = inCgroup === undefined ? base : ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', inCgroup, ...base];
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ["ignore", fd, fd],
      env: { ...process.env, ...this.opts.env },
      detached: this.opts.ownProcessGroup === true,
    });
    closeSync(fd);
    this.child = child;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.log().includes('"msg":"netfenced ready"') && this.readyCount() > this.starts) break;
      if (child.exitCode !== null) throw new Error(`netfenced exited with ${child.exitCode}:\n${this.log().slice(-3000)}`);
      if (Date.now() > deadline) throw new Error(`netfenced not ready within ${timeoutMs} ms:\n${this.log().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    this.starts++;
  }

  private starts = 0;

  private readyCount(): number {
    return this.log().split('"msg":"netfenced ready"').length - 1;
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, "utf8") : "";
  }

  cli(...args: string[]): Promise<CliResult> {
    return runCli(["--socket", this.socket, ...args]);
  }

  /** SIGKILL: no cleanup at all (the crash case). */
  async kill9(): Promise<void> {
    await this.signal("SIGKILL");
  }

  /** SIGTERM: graceful stop; resolves with the exit code. */
  async stop(): Promise<number | null> {
    return this.signal("SIGTERM");
  }

  /**
   * `kill -SIG -- -PGID` to the daemon's own process group (ownProcessGroup), as systemd signals
   * every process of a unit: the daemon and its loader child at the same time. Resolves with the
   * exit code and how long the exit took; SIGKILL to the group after `deadlineMs` (then code null).
   */
  async signalGroup(sig: NodeJS.Signals, deadlineMs = 5000): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
    const child = this.child;
    if (child === null || child.pid === undefined || !this.opts.ownProcessGroup) throw new Error("signalGroup needs a running daemon started with ownProcessGroup");
    const pgid = child.pid;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once("exit", (code, signal) => r({ code, signal })));
    const t0 = performance.now();
    process.kill(-pgid, sig);
    const timer = setTimeout(() => {
      try {
        process.kill(-pgid, "SIGKILL");
      } catch {
        // already gone
      }
    }, deadlineMs);
    const r = await exited;
    const ms = performance.now() - t0;
    clearTimeout(timer);
    this.child = null;
    return { ...r, ms };
  }

  /**
   * Runs `netfenced start` for a start that must fail: resolves when it exits by itself with its
   * exit code, stderr and how long it ran (SIGKILL after `ms`: then code is null).
   */
  runToExit(ms = 10_000): Promise<{ code: number | null; stderr: string; ms: number }> {
    const fd = openSync(this.logFile, "a");
    const argv = [...(this.opts.wrap ?? []), process.execPath, CLI, "start", "--config", this.configFile, ...(this.opts.startArgs ?? [])];
    const t0 = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", fd, "pipe"], env: { ...process.env, ...this.opts.env } });
    closeSync(fd);
    let stderr = "";
    child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), ms);
    return new Promise((resolve) =>
      child.once("close", (code) => {
        clearTimeout(timer);
        resolve({ code, stderr, ms: performance.now() - t0 });
      }),
    );
  }

  private async signal(sig: NodeJS.Signals): Promise<number | null> {
    const child = this.child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill(sig);
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    const code = await exited;
    clearTimeout(timer);
    this.child = null;
    return code;
  }

  /** Stops the daemon if running and removes its temp dir and guard cgroup (the pin root belongs to the Sandbox). */
  async cleanup(): Promise<void> {
    await this.kill9();
    rmSync(this.dir, { recursive: true, force: true });
    await removeCgroup(this.guardCgroup);
  }
}

/**
 * A fresh cgroup for a test daemon's DNS port guard, directly under the cgroup2 mount. Never the
 * mount root itself: the guard would then cover every process of the machine.
 */
export function testGuardCgroup(tag: string): string {
  const mount = findCgroup2Mount();
  if (mount === null) throw new Error("no cgroup2 mount in /proc/mounts (the DNS port guard needs one)");
  const dir = path.join(mount, `nftest-guard-${tag}`);
  if (path.resolve(dir) === path.resolve(mount)) throw new Error("refusing to guard the root cgroup in a test");
  mkdirSync(dir);
  return dir;
}

/** Removes a test cgroup, moving any process still in it to its parent first. */
export async function removeCgroup(dir: string): Promise<void> {
  const procs = existsSync(dir) ? readFileSync(path.join(dir, "cgroup.procs"), "utf8") : "";
  for (const pid of procs.split("\n").filter(Boolean)) {
    try {
      writeFileSync(path.join(path.dirname(dir), "cgroup.procs"), pid);
    } catch {
      /* already gone */
    }
  }
  for (let i = 0; i < 40 && existsSync(dir); i++) {
    try {
      rmdirSync(dir);
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Polls `pred` every 25 ms until true or `ms` elapsed (then throws naming `what`). */
export async function waitFor(pred: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
