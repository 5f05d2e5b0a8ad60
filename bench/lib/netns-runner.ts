import { mkdtemp, readFile, rm } from "node:fs/promises";
import { spawn } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "./run-command.js";

/**
 * A benchmark that runs inside a throwaway network namespace. The outer process (root) creates
 * netns `<prefix><pid>` (own lo up, the veth pairs the daemons attach to), re-runs the bench's own
 * script inside it with `ip netns exec … --inner [--workdir DIR] <the same options>` and, however
 * that ends (exit, failure, SIGINT/SIGTERM), kills what is left in the namespace by PID, deletes
 * it and removes the work directory. `ip netns exec` gives the inner run its own mount namespace,
 * where mountPrivateBpffs() puts a private bpffs for the pins. The root namespace, its firewall
 * and its lo are never touched.
 */
export interface NetnsLayout {
  /** The bench's script (its import.meta.url): what runs again inside the namespace. */
  readonly script: string;
  /** Namespace name prefix; the outer process's PID is appended. */
  readonly prefix: string;
  /** The error when not run as root. */
  readonly rootError: string;
  /** veth pairs created inside the namespace, both ends up: [host end, peer end]. */
  readonly veths: readonly (readonly [string, string])[];
  /**
   * An IPv4 address on a device of the namespace. dnsperf resolves its -s with AI_ADDRCONFIG:
   * without a non-loopback IPv4 address in the namespace it finds no IPv4 at all (and with the
   * veths' IPv6 link-local it picks ::ffff:…).
   */
  readonly address?: { readonly cidr: string; readonly dev: string };
  /**
   * mkdtemp prefix of a work directory for the inner run's files (hosts file, name lists, daemon
   * dirs), passed as `--workdir`: the outer process owns it and removes it even when the inner run
   * was killed. Without it the inner run gets no --workdir.
   */
  readonly workdirPrefix?: string;
}

/** How this process was started: by a user (outer) or by the outer run inside the namespace. */
export interface Invocation {
  readonly inner: boolean;
  /** The outer run's work directory (inner runs of a layout with workdirPrefix). */
  readonly workdir: string | null;
  /** The bench's own options (what the user gave; the outer run passes them on unchanged). */
  readonly options: string[];
}

/** Splits off the `--inner [--workdir DIR]` the outer run puts first. */
export function invocation(argv: readonly string[]): Invocation {
  if (argv[0] !== "--inner") return { inner: false, workdir: null, options: [...argv] };
  if (argv[1] === "--workdir" && argv[2] !== undefined) return { inner: true, workdir: path.resolve(argv[2]), options: argv.slice(3) };
  return { inner: true, workdir: null, options: argv.slice(1) };
}

/** The inner run's work directory; an error when the outer run gave none. */
export function requireWorkdir(inv: Invocation): string {
  if (inv.workdir === null) throw new Error("--inner needs --workdir");
  return inv.workdir;
}

/** The outer run: namespace, the inner run with `options`, clean-up. Rejects when the inner run fails. */
export async function runInNetns(layout: NetnsLayout, options: readonly string[]): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error(layout.rootError);
  const ns = `${layout.prefix}${process.pid}`;
  const workdir = layout.workdirPrefix === undefined ? null : await mkdtemp(path.join(os.tmpdir(), layout.workdirPrefix));
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
    if (workdir !== null) await rm(workdir, { recursive: true, force: true });
  };
  const onSignal = (): void => void cleanup().finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const inNs = (...cmd: string[]): Promise<string> => run("ip", ["netns", "exec", ns, ...cmd]);
    await run("ip", ["netns", "add", ns]);
    await inNs("ip", "link", "set", "lo", "up");
    for (const [host, peer] of layout.veths) {
      await inNs("ip", "link", "add", host, "type", "veth", "peer", "name", peer);
      await inNs("ip", "link", "set", host, "up");
      await inNs("ip", "link", "set", peer, "up");
    }
    if (layout.address !== undefined) await inNs("ip", "addr", "add", layout.address.cidr, "dev", layout.address.dev);
    const innerArgs = ["--inner", ...(workdir === null ? [] : ["--workdir", workdir]), ...options];
    const child = spawn("ip", ["netns", "exec", ns, process.execPath, fileURLToPath(layout.script), ...innerArgs], { stdio: "inherit" });
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    if (code !== 0) throw new Error(`benchmark inner run failed (${code})`);
  } finally {
    await cleanup();
  }
}

/** In the inner run: a private bpffs on /sys/fs/bpf unless one is there (ip netns exec gave us a fresh /sys). */
export async function mountPrivateBpffs(): Promise<void> {
  const mounts = await readFile("/proc/mounts", "utf8");
  if (!mounts.split("\n").some((l) => l.split(" ")[1] === "/sys/fs/bpf" && l.split(" ")[2] === "bpf")) {
    await run("mount", ["-t", "bpf", "bpf", "/sys/fs/bpf"]);
  }
}
