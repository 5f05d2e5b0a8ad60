import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { promisify } from "node:util";
import pino from "pino";
import { LoaderProcess } from "../../daemon/src/datapath/loader-process.js";
import { DIR_INGRESS, KIND_CGROUP, Op, encodeHello, encodeId, encodeLink, encodeLoad, encodePolicy } from "../../daemon/src/datapath/wire-format.js";
import { Deadline } from "../lib/time-limit.js";
import { summarize, type MsSummary } from "./summary.js";

/**
 * Diagnostics that explain the attach figure (not targets):
 *  - the loader's own cost per step of an attach (a separate loader child driven directly with
 *    the wire protocol, the same LOAD → REPLACE(default policy) → LINK sequence KernelFilter.attach
 *    sends; 150 ms pause between attaches so the loader's deferred release of the stale generation
 *    does not land inside the next measured step);
 *  - the two kernel operations those steps repeat (`bench/datapath/build/prog-run mim-cost`):
 *    creating a 262,144-entry BPF_F_NO_PREALLOC hash map and installing an inner map into an
 *    ARRAY_OF_MAPS slot from user space (the kernel waits for an RCU grace period on every such update);
 *  - /proc/meminfo, to put a figure on the kernel memory the attachments hold.
 */

const run = promisify(execFile);

export interface LoaderBreakdown {
  readonly what: string;
  readonly attaches: number;
  readonly load: MsSummary;
  readonly replace: MsSummary;
  readonly link: MsSummary;
  readonly total: MsSummary;
}

export async function loaderBreakdown(opts: { loaderPath: string; bpfDir: string; pinRoot: string; cgroups: readonly string[]; limitMs: number }): Promise<LoaderBreakdown> {
  const loader = LoaderProcess.spawn({ path: opts.loaderPath, logger: pino({ level: "silent" }), onEvents: () => undefined, onExit: () => undefined });
  const loaded: string[] = [];
  const t = { load: [] as number[], replace: [] as number[], link: [] as number[], total: [] as number[] };
  const deadline = new Deadline(opts.limitMs);
  try {
    await loader.request(Op.HELLO, encodeHello(opts.pinRoot, opts.bpfDir));
    for (let i = 0; i < opts.cgroups.length && !deadline.expired(); i++) {
      const id = `nfdiag-${i}`;
      await new Promise((r) => setTimeout(r, 150));
      const t0 = performance.now();
      await loader.request(Op.LOAD, encodeLoad({ id, slot: 60_000 + i, kind: KIND_CGROUP, direction: DIR_INGRESS, dnsPort: 0, dnsIp4: null, dnsIp6: null }));
      loaded.push(id);
      const t1 = performance.now();
      await loader.request(Op.REPLACE, encodePolicy(id, "allowlist", false, []));
      const t2 = performance.now();
      await loader.request(Op.LINK, encodeLink(id, 0, 0, opts.cgroups[i]!));
      const t3 = performance.now();
      t.load.push(t1 - t0);
      t.replace.push(t2 - t1);
      t.link.push(t3 - t2);
      t.total.push(t3 - t0);
    }
  } finally {
    for (const id of loaded) await loader.request(Op.UNLOAD, encodeId(id)).catch(() => undefined);
    await loader.stop().catch(() => undefined);
    await rm(opts.pinRoot, { recursive: true, force: true });
  }
  return {
    what: "a loader child driven directly (no daemon): LOAD, REPLACE (empty allowlist), LINK to a cgroup",
    attaches: t.total.length,
    load: summarize(t.load),
    replace: summarize(t.replace),
    link: summarize(t.link),
    total: summarize(t.total),
  };
}

export interface KernelOpCost {
  readonly what: string;
  readonly hash_map_create: MsSummary;
  readonly outer_slot_install: MsSummary;
}

/** `prog-run mim-cost` (built by `make -C bench/datapath build/prog-run`); null with a reason when it cannot run. */
export async function kernelOpCost(root: string, reps: number): Promise<KernelOpCost | { readonly unavailable: string }> {
  const bin = `${root}/bench/datapath/build/prog-run`;
  try {
    if (!existsSync(bin)) await run("make", ["-s", "-C", `${root}/bench/datapath`, "build/prog-run"], { timeout: 120_000 });
    const { stdout } = await run(bin, ["mim-cost", String(reps)], { timeout: 60_000 });
    const r = JSON.parse(stdout) as { create_ms: number[]; install_ms: number[] };
    return {
      what: "bench/datapath/build/prog-run mim-cost: bpf_map_create of a 262,144-entry NO_PREALLOC hash (netfence's exact table), and bpf_map_update_elem of an ARRAY_OF_MAPS slot from user space",
      hash_map_create: summarize(r.create_ms),
      outer_slot_install: summarize(r.install_ms),
    };
  } catch (err) {
    return { unavailable: (err as Error).message.split("\n")[0] ?? "unknown error" };
  }
}

export interface MemInfo {
  readonly memAvailableKiB: number;
  readonly vmallocUsedKiB: number;
}

export function memInfo(): MemInfo {
  const text = readFileSync("/proc/meminfo", "utf8");
  const kib = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? NaN);
  return { memAvailableKiB: kib("MemAvailable"), vmallocUsedKiB: kib("VmallocUsed") };
}
