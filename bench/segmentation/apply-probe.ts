/**
 * bench/segmentation's Netfence apply path alone, for profiling: the scoped REPLACE of N
 * owner/port rules (the same policy and engine as run.ts --scoped), `--runs` times back to back,
 * with the scope compiler's JavaScript timed apart (ScopeRegistry.replace + the wire encoding, on
 * a registry of its own). No traffic, no baselines: minutes faster than run.ts, for finding where
 * the apply time goes (run with --cpu-prof, strace, perf). Same namespace, bpffs and cgroup
 * set-up as run.ts. Usage (root):
 *   flock /tmp/netfence-bench.lock node dist/bench/segmentation/apply-probe.js [--sizes 10000] [--runs 30] [--gap-ms 0] [--cpu-prof FILE]
 * `--gap-ms`: a pause between applies (0: back to back, as run.ts's apply phase); `--cpu-prof`: a
 * V8 CPU profile of the timed applies (open in Chrome DevTools), profiler on, so inflated.
 * Prints p50/p99 per size; never asserts anything about time.
 */
import { mkdir, rmdir, writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { walkArgs } from "../lib/bench-args.js";
import { cgroup2InNetns } from "../lib/cgroup-mount.js";
import { invocation, mountPrivateBpffs, requireWorkdir, runInNetns } from "../lib/netns-runner.js";
import { loadAverage } from "../lib/run-record.js";
import { ScopeRegistry } from "../../daemon/src/datapath/scope-registry.js";
import { encodeScopeWire } from "../../daemon/src/datapath/scope-wire.js";
import { startNetfence } from "./netfence-engine.js";
import { netfenceScoped, segRules } from "./rulesets.js";

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! * 10) / 10;
};

async function inner(sizes: number[], runs: number, gapMs: number, prof: string | null, workdir: string): Promise<void> {
  await mountPrivateBpffs();
  const cg = await cgroup2InNetns(workdir);
  const cgNf = path.join(cg.root, `nfprobe-${process.pid}`);
  await mkdir(cgNf);
  const nf = await startNetfence({ pinRoot: `/sys/fs/bpf/nfprobe-${process.pid}`, cgroup: cgNf, scoped: true, benchUid: 1, benchPort: 7400, initialRules: Math.min(...sizes) });
  try {
    process.stderr.write(`load ${loadAverage().join(" ")}\n`);
    for (const n of sizes) {
      // The JavaScript half alone: what replacePolicy computes before the frame goes out.
      const reg = new ScopeRegistry();
      const js: number[] = [];
      for (let i = 0; i < runs; i++) {
        const p = netfenceScoped(segRules(n, 1, 7400, i % 2 === 0 ? "b" : "a"));
        const t0 = performance.now();
        const plan = reg.replace(p.entries, Date.now());
        encodeScopeWire(plan.scopeWire);
        plan.commit();
        js.push(performance.now() - t0);
      }
      await nf.apply(n, "a");
      const session = prof === null ? null : new Session();
      if (session) {
        session.connect();
        await session.post("Profiler.enable");
        await session.post("Profiler.start");
      }
      const ms: number[] = [];
      for (let i = 0; i < runs; i++) {
        if (gapMs > 0) await sleep(gapMs);
        ms.push(await nf.apply(n, i % 2 === 0 ? "b" : "a"));
      }
      if (session && prof !== null) {
        const { profile } = await session.post("Profiler.stop");
        await writeFile(`${prof}.n${n}.cpuprofile`, JSON.stringify(profile));
        session.disconnect();
      }
      process.stderr.write(`n=${n}: apply p50 ${pct(ms, 50)} ms p99 ${pct(ms, 99)} ms; scope compile + encode p50 ${pct(js, 50)} ms; all ${ms.map((x) => x.toFixed(1)).join(" ")}\n`);
    }
    process.stderr.write(`load ${loadAverage().join(" ")}\n`);
  } finally {
    await nf.close();
    await rmdir(cgNf).catch(() => undefined);
    await cg.release();
  }
}

const inv = invocation(process.argv.slice(2));
let sizes = [10_000];
let runs = 30;
let gapMs = 0;
let prof: string | null = null;
walkArgs(inv.options, (flag, value) => {
  if (flag === "--sizes") sizes = value().split(",").map(Number);
  else if (flag === "--runs") runs = Number(value());
  else if (flag === "--gap-ms") gapMs = Number(value());
  else if (flag === "--cpu-prof") prof = path.resolve(value());
  else return false;
  return true;
});
if (inv.inner) await inner(sizes, runs, gapMs, prof, requireWorkdir(inv));
else await runInNetns({ script: import.meta.url, prefix: "nfprobe", rootError: "the probe needs root (network namespace, cgroups, eBPF)", veths: [], workdirPrefix: "nf-probe-" }, inv.options);
