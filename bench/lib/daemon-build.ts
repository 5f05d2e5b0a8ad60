import { existsSync, readlinkSync } from "node:fs";
import path from "node:path";
import type { BenchDaemon } from "../daemon/daemon-process.js";

/**
 * A netfence checkout whose built daemon a benchmark runs (`--daemon-dir DIR`), so one run can
 * measure two builds (e.g. before and after a refactor) interleaved on the same machine. The
 * daemon finds its loader child and eBPF objects from its own location (projectRoot(): the
 * checkout's bpf/loader/netfence-loader and bpf/prebuilt), so pointing at a checkout's CLI is
 * enough to run that checkout's whole datapath.
 */
export interface DaemonBuild {
  /** Short name used in the results (e.g. "before", "after"). */
  readonly label: string;
  /** The checkout (absolute). */
  readonly dir: string;
  /** Its `netfenced` entry point (the CLI's start command). */
  readonly cli: string;
  /** Its loader binary (what the daemon will spawn). */
  readonly loader: string;
}

/**
 * The CLI entry of a checkout: the npm-workspaces layout builds each package into its own dist/
 * (cli/dist/index.js); the single-package layout before issue 12 built everything into the
 * root's dist/ (dist/cli/src/index.js).
 */
export function daemonBuild(label: string, dir: string): DaemonBuild {
  const root = path.resolve(dir);
  const candidates = [path.join(root, "cli", "dist", "index.js"), path.join(root, "dist", "cli", "src", "index.js")];
  const cli = candidates.find((c) => existsSync(c));
  if (cli === undefined) throw new Error(`${label}: no built CLI in ${root} (looked for ${candidates.join(", ")}; run scripts/bootstrap.sh there)`);
  const loader = path.join(root, "bpf", "loader", "netfence-loader");
  if (!existsSync(loader)) throw new Error(`${label}: no loader at ${loader} (make -C bpf loader there)`);
  return { label, dir: root, cli, loader };
}

/** Parses `label=DIR` (the form of a repeated `--daemon-dir`). */
export function parseDaemonDirArg(text: string): DaemonBuild {
  const eq = text.indexOf("=");
  if (eq <= 0) throw new Error(`--daemon-dir wants LABEL=DIR, got "${text}"`);
  const label = text.slice(0, eq);
  if (!/^[a-z][a-z0-9-]{0,15}$/.test(label)) throw new Error(`--daemon-dir label "${label}": lower-case letters, digits, '-', at most 16`);
  return daemonBuild(label, text.slice(eq + 1));
}

/** The builds of a run: the `--daemon-dir`s given, else the checkout `here` as "this"; at most 3, labels distinct. */
export function checkedBuilds(given: readonly DaemonBuild[], here: string): DaemonBuild[] {
  const builds = given.length === 0 ? [daemonBuild("this", here)] : [...given];
  if (builds.length > 3) throw new Error("at most 3 --daemon-dir");
  if (new Set(builds.map((b) => b.label)).size !== builds.length) throw new Error("--daemon-dir labels must differ");
  return builds;
}

/** `--daemon-dir LABEL=DIR` of each build (the run's command line, as the results record it). */
export function daemonDirArgs(builds: readonly DaemonBuild[]): string[] {
  return builds.flatMap((b) => ["--daemon-dir", `${b.label}=${b.dir}`]);
}

/**
 * The daemon's one loader child, checked to be its own checkout's loader (projectRoot() of its
 * dist), not another build's; `exe` is null when /proc no longer shows it.
 */
export function ownLoader(daemon: BenchDaemon, build: DaemonBuild): { pid: number; exe: string | null } {
  const loaders = daemon.childPids();
  if (loaders.length !== 1) throw new Error(`${build.label}: expected one loader child, found ${loaders.length}`);
  const exe = processExe(loaders[0]!);
  if (exe !== null && exe.replace(/ \(deleted\)$/, "") !== build.loader) throw new Error(`${build.label}: the daemon runs ${exe}, expected ${build.loader}`);
  return { pid: loaders[0]!, exe };
}

/**
 * The ratios of a run with two or more builds: each figure of the second build over the same
 * figure of the first (3 decimals), under `ratios: "<second> / <first>"`; null with one build.
 */
export function secondOverFirst<R>(labels: readonly string[], results: Readonly<Record<string, R>>, figures: Readonly<Record<string, (r: R) => number>>): Record<string, number | string> | null {
  if (labels.length < 2) return null;
  const [first, second] = [results[labels[0]!]!, results[labels[1]!]!];
  const out: Record<string, number | string> = { ratios: `${labels[1]} / ${labels[0]}` };
  for (const [name, figure] of Object.entries(figures)) out[name] = Math.round((figure(second) / figure(first)) * 1000) / 1000;
  return out;
}

/** The executable a running process was started from (/proc/<pid>/exe), or null when gone. */
export function processExe(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return null;
  }
}
