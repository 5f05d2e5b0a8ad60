/** The daemon benchmark's sizes, limits and command line, and two small helpers of its report (run.ts runs it). */
import { spawn } from "node:child_process";
import path from "node:path";
import type { VerifiedSample } from "./attach-phase.js";
import { procStatus } from "./daemon-process.js";
import type { VerificationSummary } from "./results.js";
import { kibToMib, summarize } from "./summary.js";

/**
 * Hard bound of the whole run. A full run takes 2-3 minutes here; on a heavily loaded machine an
 * attach can take 300+ ms (building 1000 attachments alone then takes minutes), hence the margin.
 */
export const GLOBAL_LIMIT_MS = 10 * 60_000;
/** Attaching stops (and the run reports how far it got) when MemAvailable falls below this. */
export const MEM_FLOOR_KIB = 3 * 1024 * 1024;
export const ECHO_PORT = 7000;
export const DNS_PORTS = { min: 61000, max: 62999 };

export interface Sizes {
  readonly latencyAttaches: number;
  /** Attaches timed one by one at the top of the scale (the last ones before the total). */
  readonly atScaleAttaches: number;
  readonly buildUpConcurrency: number;
  readonly diagnosticAttaches: number;
  readonly totalAttachments: number;
  readonly veths: number;
  readonly verifyEvery: number;
  readonly interfaceVerified: number;
  readonly baselineAttaches: number;
  readonly listRuns: number;
  readonly restarts: number;
}

export const FULL: Sizes = { latencyAttaches: 200, atScaleAttaches: 200, buildUpConcurrency: 4, diagnosticAttaches: 20, totalAttachments: 1000, veths: 50, verifyEvery: 10, interfaceVerified: 10, baselineAttaches: 50, listRuns: 30, restarts: 2 };
export const QUICK: Sizes = { latencyAttaches: 50, atScaleAttaches: 30, buildUpConcurrency: 4, diagnosticAttaches: 5, totalAttachments: 120, veths: 10, verifyEvery: 10, interfaceVerified: 3, baselineAttaches: 10, listRuns: 3, restarts: 1 };

export interface Args {
  quick: boolean;
  out: string;
  readme: string | null;
  /** Copy the daemon's JSON log here before the temp dir goes (debugging). */
  keepLog: string | null;
  /** Write a V8 CPU profile of one `list --all --json` CLI run into this directory (debugging). */
  cpuProfDir: string | null;
}

export function parseArgs(argv: readonly string[], root: string): Args {
  const a: Args = { quick: false, out: path.join(root, "bench", "results", "daemon.json"), readme: path.join(root, "bench", "daemon", "README.md"), keepLog: null, cpuProfDir: null };
  let outGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    if (v === "--quick") a.quick = true;
    else if (v === "--out") {
      a.out = path.resolve(argv[++i] ?? "");
      outGiven = true;
    } else if (v === "--no-readme") a.readme = null;
    else if (v === "--keep-log") a.keepLog = path.resolve(argv[++i] ?? "");
    else if (v === "--cpu-prof-cli") a.cpuProfDir = path.resolve(argv[++i] ?? "");
    else throw new Error(`unknown argument "${v}" (use --quick, --out FILE, --no-readme, --keep-log FILE, --cpu-prof-cli DIR)`);
  }
  if (a.quick) {
    // A quick run is a smoke test: it never overwrites the committed results unless told to.
    if (!outGiven) a.out = path.join(root, "bench", "results", "daemon.partial.tmp");
    a.readme = null;
  }
  return a;
}


export function verificationSummary(v: readonly VerifiedSample[]): VerificationSummary {
  const reasons: Record<string, number> = {};
  for (const s of v) if (s.unlisted_blocked_after) reasons[s.blocked_reason] = (reasons[s.blocked_reason] ?? 0) + 1;
  const count = (f: (s: VerifiedSample) => boolean) => v.filter(f).length;
  return {
    samples: v.length,
    unlisted_answered_before_attach: count((s) => s.unlisted_answered_before),
    unlisted_blocked_right_after_return: count((s) => s.unlisted_blocked_after),
    allowed_answered_after_attach: count((s) => s.allowed_answered_after),
    blocked_reasons: reasons,
    probe_sent_after_return: summarize(v.map((s) => s.probe_sent_after_return_ms)),
    all_verified: v.every((s) => s.unlisted_answered_before && s.unlisted_blocked_after && s.allowed_answered_after),
  };
}

export async function idleNodeRssMib(): Promise<number> {
  const child = spawn(process.execPath, ["-e", "setInterval(()=>{},1e9)"], { stdio: "ignore" });
  try {
    await new Promise((r) => setTimeout(r, 1000));
    return kibToMib(procStatus(child.pid!).vmRssKiB);
  } finally {
    child.kill("SIGKILL");
  }
}

/** The units of the results JSON, by key suffix. */
export const UNITS = {
  _ms: "milliseconds (wall clock, performance.now())",
  _mib: "MiB (2^20 bytes), from /proc/<pid>/status VmRSS/VmHWM",
  _mb: "MB (10^6 bytes)",
  _kib: "KiB (2^10 bytes)",
  _s: "seconds",
} as const;
