import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { readFile, readdir, rm } from "node:fs/promises";
import { promisify } from "node:util";
import pino from "pino";
import { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import { FileStateStore } from "../../daemon/src/store/state-store.js";
import type { StoreSnapshot } from "../../daemon/src/store/snapshot.js";
import { Deadline } from "../lib/time-limit.js";
import { summarize, type MsSummary } from "./summary.js";

/**
 * Diagnostics that explain the attach figure (not targets):
 *  - the data path alone: KernelFilter.attach (the loader child's LOAD → REPLACE(policy) → LINK,
 *    exactly what the daemon's attach does in the kernel) without the daemon around it — the
 *    difference to the daemon's Attach is gRPC + manager + state file + DNS server;
 *  - re-adopting pinned attachments one ADOPT at a time vs all at once (the loader does idle
 *    work — clearing a retired generation after an RCU grace period — between requests);
 *  - the length of one RCU grace period on this machine;
 *  - /proc/meminfo, to put a figure on the kernel memory the attachments hold.
 */

const run = promisify(execFile);

export interface FilterAttachCost {
  readonly what: string;
  readonly attaches: number;
  readonly attach: MsSummary;
  readonly detach: MsSummary;
  /** Re-adopting the same pinned attachments with a fresh loader child, one ADOPT at a time (as the daemon's restore does). */
  readonly adopt_sequential_ms_per_attachment: number;
  /** The same with every ADOPT sent at once (the loader gets no idle time between them). */
  readonly adopt_pipelined_ms_per_attachment: number;
}

export async function filterAttachCost(opts: { loaderPath: string; pinRoot: string; cgroups: readonly string[]; limitMs: number }): Promise<FilterAttachCost> {
  const start = () => KernelFilter.start({ loaderPath: opts.loaderPath, pinRoot: opts.pinRoot, logger: pino({ level: "silent" }) });
  let filter = await start();
  const attached: string[] = [];
  const attachMs: number[] = [];
  const detachMs: number[] = [];
  const adoptMs = { sequential: 0, pipelined: 0 };
  const deadline = new Deadline(opts.limitMs);
  try {
    for (let i = 0; i < opts.cgroups.length && !deadline.expired(); i++) {
      const id = `nfdiag-${i}`;
      const t0 = performance.now();
      await filter.attach(
        { id, slot: 60_000 + i, target: { kind: "cgroup", path: opts.cgroups[i]! }, dns: { ipv4: "127.0.0.1", ipv6: null, port: 61999 } },
        { mode: "allowlist", audit: false, entries: [] },
      );
      attachMs.push(performance.now() - t0);
      attached.push(id);
    }
    for (const mode of ["sequential", "pipelined"] as const) {
      await filter.close();
      filter = await start();
      const t0 = performance.now();
      if (mode === "sequential") for (const id of attached) await filter.adopt(id);
      else await Promise.all(attached.map((id) => filter.adopt(id)));
      adoptMs[mode] = (performance.now() - t0) / Math.max(1, attached.length);
    }
    for (const id of attached.splice(0)) {
      const t0 = performance.now();
      await filter.detach(id);
      detachMs.push(performance.now() - t0);
    }
  } finally {
    for (const id of attached) await filter.detach(id).catch(() => undefined);
    await filter.close().catch(() => undefined);
    await rm(opts.pinRoot, { recursive: true, force: true });
  }
  return {
    what: "KernelFilter with its own loader child, no daemon (cgroup targets, empty allowlist): attach, re-adopt after a loader restart, detach",
    attaches: attachMs.length,
    attach: summarize(attachMs),
    detach: summarize(detachMs),
    adopt_sequential_ms_per_attachment: Math.round(adoptMs.sequential * 100) / 100,
    adopt_pipelined_ms_per_attachment: Math.round(adoptMs.pipelined * 100) / 100,
  };
}

export interface GracePeriodCost {
  readonly what: string;
  readonly grace_period: MsSummary;
}

/**
 * One RCU grace period as user space sees it on this machine: a write of an ARRAY_OF_MAPS slot
 * from user space returns only after synchronize_rcu(), the same wait membarrier(GLOBAL) does in
 * the loader (`bench/datapath/build/prog-run mim-cost`, built on demand). null with a reason when
 * the helper cannot run.
 */
export async function gracePeriodCost(root: string, reps: number): Promise<GracePeriodCost | { readonly unavailable: string }> {
  const bin = `${root}/bench/datapath/build/prog-run`;
  try {
    if (!existsSync(bin)) await run("make", ["-s", "-C", `${root}/bench/datapath`, "build/prog-run"], { timeout: 120_000 });
    const { stdout } = await run(bin, ["mim-cost", String(reps)], { timeout: 60_000 });
    const r = JSON.parse(stdout) as { install_ms: number[] };
    return {
      what: "one RCU grace period seen from user space: bpf_map_update_elem of an ARRAY_OF_MAPS slot (waits in synchronize_rcu), via bench/datapath/build/prog-run mim-cost",
      grace_period: summarize(r.install_ms),
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

export interface AttachmentKernelMemory {
  readonly what: string;
  readonly sampled_attachments: number;
  /** Per attachment (mean of the sample): bytes_memlock of every map and the program. */
  readonly per_attachment_kib: number;
  /** Per pinned object name (mean of the sample), KiB; map-in-map outer maps include their inner maps. */
  readonly by_object_kib: Record<string, number>;
}

async function bpftoolJson(args: string[]): Promise<unknown> {
  const { stdout } = await run("bpftool", ["-j", ...args], { timeout: 20_000, maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(stdout) as unknown;
}

async function mapBytes(spec: string[]): Promise<number> {
  const info = (await bpftoolJson(["map", "show", ...spec])) as { type?: string; bytes_memlock?: number };
  let bytes = info.bytes_memlock ?? 0;
  if (info.type === "array_of_maps" || info.type === "hash_of_maps") {
    const entries = (await bpftoolJson(["map", "dump", ...spec])) as { inner_map_id?: number }[];
    for (const e of entries) if (typeof e.inner_map_id === "number") bytes += await mapBytes(["id", String(e.inner_map_id)]);
  }
  return bytes;
}

/**
 * Kernel memory of attachments, from what the kernel reports (`bpftool … show` bytes_memlock of
 * every pinned map — inner maps of map-in-map tables included — and of the program) for a sample
 * of attachment pin directories.
 */
export async function attachmentKernelMemory(pinRoot: string, ids: readonly string[]): Promise<AttachmentKernelMemory> {
  const byObject: Record<string, number> = {};
  let total = 0;
  for (const id of ids) {
    for (const name of await readdir(`${pinRoot}/${id}`)) {
      if (name === "link") continue;
      const p = `${pinRoot}/${id}/${name}`;
      const bytes = name === "prog" ? (((await bpftoolJson(["prog", "show", "pinned", p])) as { bytes_memlock?: number }).bytes_memlock ?? 0) : await mapBytes(["pinned", p]);
      byObject[name] = (byObject[name] ?? 0) + bytes;
      total += bytes;
    }
  }
  const n = Math.max(1, ids.length);
  return {
    what: "bpftool bytes_memlock (the kernel's own accounting) of each pinned map (with inner maps) and the program, mean over sampled attachments",
    sampled_attachments: ids.length,
    per_attachment_kib: Math.round((total / n / 1024) * 10) / 10,
    by_object_kib: Object.fromEntries(Object.entries(byObject).map(([k, v]) => [k, Math.round((v / n / 1024) * 10) / 10])),
  };
}

export interface StateSaveCost {
  readonly what: string;
  readonly state_file_kib: number;
  readonly save: MsSummary;
}

/**
 * What one state-file write costs at the daemon's current size: the daemon's own state.json is
 * loaded and saved again with the daemon's FileStateStore (stringify, write, fsync, rename,
 * directory fsync) into a scratch directory on the same filesystem. An Attach waits for one.
 */
export async function stateSaveCost(stateFile: string, scratchDir: string, reps: number): Promise<StateSaveCost> {
  const text = await readFile(stateFile, "utf8");
  const snapshot = JSON.parse(text) as StoreSnapshot;
  const store = new FileStateStore(scratchDir);
  const ms: number[] = [];
  try {
    await store.load();
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      await store.save(snapshot);
      ms.push(performance.now() - t0);
    }
  } finally {
    await rm(scratchDir, { recursive: true, force: true });
  }
  return {
    what: "FileStateStore.save of the daemon's own state.json (JSON.stringify, write, fsync, rename, dir fsync) on the same filesystem",
    state_file_kib: Math.round((Buffer.byteLength(text) / 1024) * 10) / 10,
    save: summarize(ms),
  };
}
