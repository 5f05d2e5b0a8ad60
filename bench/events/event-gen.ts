import { execFile } from "node:child_process";
import path from "node:path";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";

/** The built driver (`make -C bench/events`). */
export const EVENT_GEN = path.join(projectRoot(), "bench", "events", "build", "event-gen");
/** bpf/netfence_tc.bpf.c built with -DNF_NO_EVENTS, beside the prebuilt cgroup/bindguard objects. */
export const NO_EVENTS_BPF_DIR = path.join(projectRoot(), "bench", "events", "build", "noevents");

export interface GenRun {
  readonly calls: number;
  readonly runs: number;
  readonly wallNs: number;
  /** Sum of the kernel-reported program run times. */
  readonly progNs: number;
  /** Calls whose verdict was not a drop (must be 0: every packet is blocked). */
  readonly pass: number;
}

export interface GenArgs {
  readonly prog: string;
  readonly calls: number;
  readonly repeat: number;
  readonly flows: number;
  /** Calls per second; 0 = as fast as possible. */
  readonly rate: number;
  readonly src: string;
  readonly dstBase: string;
  /** Pin the driver to this CPU (taskset). */
  readonly cpu?: number;
}

/** One event-gen run (bounded: the driver stops after 60 s, this waits 90 s at most). */
export function eventGen(a: GenArgs): Promise<GenRun> {
  const argv = [a.prog, a.calls, a.repeat, a.flows, a.rate, a.src, a.dstBase].map(String);
  return new Promise((resolve, reject) => {
    const [cmd, args] = a.cpu === undefined ? [EVENT_GEN, argv] : ["taskset", ["-c", String(a.cpu), EVENT_GEN, ...argv]];
    execFile(cmd, args, { timeout: 90_000 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`event-gen ${argv.join(" ")}: ${stderr.trim() || err.message}`));
        return;
      }
      const j = JSON.parse(stdout) as { calls: number; runs: number; wall_ns: number; prog_ns: number; retval_pass: number };
      resolve({ calls: j.calls, runs: j.runs, wallNs: j.wall_ns, progNs: j.prog_ns, pass: j.retval_pass });
    });
  });
}

/** dst-base for run `n`: disjoint 4M-address ranges, so no run repeats a flow of an earlier one. */
export function dstBase(n: number): string {
  const v = (11 << 24) + n * 0x400000;
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join(".");
}
