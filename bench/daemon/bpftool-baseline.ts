import { summarize } from "./summary.js";
import { execFile } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { Deadline } from "../lib/time-limit.js";

/**
 * Baseline (a) of the attach latency: how a shell-script tool attaches a filter — one process per
 * step, same eBPF objects as netfence (bpf/prebuilt/*.bpf.o, so the verifier work is the same):
 *
 *   cgroup:    bpftool prog load netfence_cgroup.bpf.o PIN type cgroup/skb
 *              bpftool cgroup attach CGROUP egress pinned PIN
 *   interface: bpftool prog load netfence_tc.bpf.o PIN
 *              tc qdisc add dev IF clsact
 *              tc filter add dev IF ingress bpf direct-action object-pinned PIN
 *
 * (bpftool 7.1 has no tcx attach, so the interface variant uses tc/clsact.) No policy is written
 * into the program's maps and nothing is persisted: a lower bound of such a tool's cost.
 */

const run = promisify(execFile);

export interface BaselineSample {
  readonly totalMs: number;
  readonly loadMs: number;
  readonly attachMs: number;
}

export interface BaselineRun {
  readonly samples: BaselineSample[];
  readonly commands: string[];
}

async function timed(cmd: string, args: string[]): Promise<number> {
  const t0 = performance.now();
  await run(cmd, args, { timeout: 20_000 });
  return performance.now() - t0;
}

export async function bpftoolCgroupBaseline(opts: { obj: string; pinDir: string; cgroups: readonly string[]; limitMs: number }): Promise<BaselineRun> {
  await mkdir(opts.pinDir, { recursive: true });
  const samples: BaselineSample[] = [];
  const attached: { cg: string; pin: string }[] = [];
  const deadline = new Deadline(opts.limitMs);
  try {
    for (let i = 0; i < opts.cgroups.length && !deadline.expired(); i++) {
      const cg = opts.cgroups[i]!;
      const pin = path.join(opts.pinDir, `cg${i}`);
      const loadMs = await timed("bpftool", ["prog", "load", opts.obj, pin, "type", "cgroup/skb"]);
      const attachMs = await timed("bpftool", ["cgroup", "attach", cg, "egress", "pinned", pin]);
      attached.push({ cg, pin });
      samples.push({ totalMs: loadMs + attachMs, loadMs, attachMs });
    }
  } finally {
    for (const a of attached) await run("bpftool", ["cgroup", "detach", a.cg, "egress", "pinned", a.pin], { timeout: 20_000 }).catch(() => undefined);
    await rm(opts.pinDir, { recursive: true, force: true });
  }
  return {
    samples,
    commands: ["bpftool prog load netfence_cgroup.bpf.o PIN type cgroup/skb", "bpftool cgroup attach CGROUP egress pinned PIN"],
  };
}

export async function tcInterfaceBaseline(opts: { obj: string; pinDir: string; interfaces: readonly string[]; limitMs: number }): Promise<BaselineRun> {
  await mkdir(opts.pinDir, { recursive: true });
  const samples: BaselineSample[] = [];
  const attached: string[] = [];
  const deadline = new Deadline(opts.limitMs);
  try {
    for (let i = 0; i < opts.interfaces.length && !deadline.expired(); i++) {
      const dev = opts.interfaces[i]!;
      const pin = path.join(opts.pinDir, `tc${i}`);
      const loadMs = await timed("bpftool", ["prog", "load", opts.obj, pin]);
      attached.push(dev);
      const qdiscMs = await timed("tc", ["qdisc", "add", "dev", dev, "clsact"]);
      const filterMs = await timed("tc", ["filter", "add", "dev", dev, "ingress", "bpf", "direct-action", "object-pinned", pin]);
      samples.push({ totalMs: loadMs + qdiscMs + filterMs, loadMs, attachMs: qdiscMs + filterMs });
    }
  } finally {
    for (const dev of attached) await run("tc", ["qdisc", "del", "dev", dev, "clsact"], { timeout: 20_000 }).catch(() => undefined);
    await rm(opts.pinDir, { recursive: true, force: true });
  }
  return {
    samples,
    commands: ["bpftool prog load netfence_tc.bpf.o PIN", "tc qdisc add dev IF clsact", "tc filter add dev IF ingress bpf direct-action object-pinned PIN"],
  };
}

/** The results-file form of a baseline run. */
export function baselineSummary(run: BaselineRun, what: string) {
  return {
    what,
    commands: run.commands,
    attaches: run.samples.length,
    per_attach: summarize(run.samples.map((s) => s.totalMs)),
    load_step: summarize(run.samples.map((s) => s.loadMs)),
    attach_step: summarize(run.samples.map((s) => s.attachMs)),
  };
}
