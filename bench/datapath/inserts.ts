import { writeFile } from "node:fs/promises";
import path from "node:path";
import type { FilterEntry } from "../../daemon/src/datapath/filter.js";
import type { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import { encodeEntries } from "../../daemon/src/datapath/wire-format.js";
import { sh } from "../../test/helpers/sandbox.js";
import { mean, median, percentile, round } from "../lib/stats.js";
import { Deadline } from "../lib/time-limit.js";
import { makeEntrySet } from "./entry-sets.js";

/**
 * Benchmark 3: policy update latency from TypeScript through the loader child into the kernel,
 * against `bpftool map update` run as one process per entry on the same (pinned) kernel map.
 *
 *   single_insert   KernelFilter.upsertEntries(id, [one /32]) awaited one after another
 *   batch_insert_*  one upsertEntries call with 10k entries (hosts: exact hash; prefixes: LPM trie)
 *   replace_10k     KernelFilter.replacePolicy with 10k entries (fresh inner maps + generation flip)
 *   bpftool_*       the live IPv4 exact-hash inner map, pinned for the occasion, updated by
 *                   `bpftool map update pinned …` (a process per entry) and by `bpftool batch`
 */

export interface InsertOptions {
  readonly filter: KernelFilter;
  readonly attachmentId: string;
  readonly pinRoot: string;
  readonly tmpDir: string;
  readonly progRun: string;
  readonly quick: boolean;
  readonly log: (msg: string) => void;
}

export interface LatencyFigures {
  readonly count: number;
  readonly p50_us: number;
  readonly p99_us: number;
  readonly mean_us: number;
  readonly min_us: number;
  readonly max_us: number;
}

export interface BatchFigures {
  readonly batches: number;
  readonly entries_per_batch: number;
  /** Median over batches of (batch time / entries). */
  readonly per_entry_us: number;
  /** The fastest batch (machine load only ever slows a batch down). */
  readonly best_per_entry_us: number;
  readonly batch_ms: readonly number[];
  /** Of which: validating + encoding the batch into its frame in TypeScript (wire-format.encodeEntries), median. */
  readonly encode_ms: number;
}

export interface InsertResult {
  readonly map_size_before: string;
  /** IPC floor: KernelFilter.counters() round trips (loader reads a per-CPU array, no map write). */
  readonly counters_round_trip: LatencyFigures;
  readonly single_insert: LatencyFigures;
  readonly batch_insert_hosts: BatchFigures;
  readonly batch_insert_prefixes: BatchFigures;
  readonly replace_10k: {
    readonly runs: number;
    readonly entries: number;
    readonly p50_ms: number;
    readonly min_ms: number;
    readonly max_ms: number;
    readonly samples_ms: readonly number[];
    readonly spacing_ms: number;
  };
  /** Diagnostic (prog-run mim-cost): the per-table kernel work of a REPLACE besides filling entries. */
  readonly replace_breakdown: {
    readonly create_inner_hash_p50_ms: number;
    readonly install_outer_slot_p50_ms: number;
    readonly create_inner_hash_ms: readonly number[];
    readonly install_outer_slot_ms: readonly number[];
    readonly note: string;
  };
  readonly bpftool_process_per_update: {
    readonly count: number;
    readonly per_entry_ms: number;
    readonly p50_ms: number;
    readonly p99_ms: number;
    readonly map: string;
  };
  readonly bpftool_batch: { readonly count: number; readonly total_ms: number; readonly per_entry_us: number };
}

const host = (a: number, b: number, c: number, d: number, ruleId = 0): FilterEntry => ({
  cidr: { family: 4, addr: Uint8Array.of(a, b, c, d), prefixLen: 32 },
  allow: true,
  deny: false,
  expiresAtMs: null,
  ruleId,
});

const ns = () => process.hrtime.bigint();
const usSince = (t: bigint) => Number(ns() - t) / 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Host i (< 65536) of block b (< 64): 100.(64+b).x.y — distinct per (b, i). */
function hostAt(block: number, i: number): FilterEntry {
  return host(100, 64 + block, (i >>> 8) & 0xff, i & 0xff);
}

export async function insertBench(o: InsertOptions): Promise<InsertResult> {
  const base = makeEntrySet(4, 10_000, 0xbe7c);
  await o.filter.replacePolicy(o.attachmentId, { mode: "allowlist", audit: false, entries: base.entries });
  await sleep(250);

  // --- one request per round trip: COUNTERS (IPC floor) and UPSERT of one /32, interleaved
  const warmup = 200;
  const want = o.quick ? 500 : 3000;
  const samples: number[] = [];
  const ipc: number[] = [];
  const dl = new Deadline(30_000);
  for (let i = 0; i < warmup + want && !dl.expired(); i++) {
    const e = [hostAt(0, i)];
    let t = ns();
    await o.filter.upsertEntries(o.attachmentId, e);
    if (i >= warmup) samples.push(usSince(t));
    t = ns();
    await o.filter.counters([o.attachmentId]);
    if (i >= warmup) ipc.push(usSince(t));
  }
  if (samples.length < Math.min(want, 2000)) throw new Error(`only ${samples.length} single inserts finished within the time limit`);
  const latency = (xs: number[]): LatencyFigures => ({
    count: xs.length,
    p50_us: round(percentile(xs, 50), 1),
    p99_us: round(percentile(xs, 99), 1),
    mean_us: round(mean(xs), 1),
    min_us: round(Math.min(...xs), 1),
    max_us: round(Math.max(...xs), 1),
  });
  const single = latency(samples);
  const counters = latency(ipc);
  o.log(`inserts: single round trip p50 ${single.p50_us} µs p99 ${single.p99_us} µs over ${single.count}`);

  // --- batched inserts (fresh keys every batch)
  const batchN = 10_000;
  const batches = o.quick ? 2 : 5;
  const batchRun = async (make: (b: number, i: number) => FilterEntry): Promise<BatchFigures> => {
    const ms: number[] = [];
    const enc: number[] = [];
    for (let b = 0; b < batches; b++) {
      const entries = Array.from({ length: batchN }, (_, i) => make(b, i));
      let t = ns();
      encodeEntries(o.attachmentId, entries);
      enc.push(usSince(t) / 1000);
      t = ns();
      await o.filter.upsertEntries(o.attachmentId, entries);
      ms.push(usSince(t) / 1000);
    }
    return {
      batches,
      entries_per_batch: batchN,
      per_entry_us: round(median(ms.map((m) => (m * 1000) / batchN)), 3),
      best_per_entry_us: round((Math.min(...ms) * 1000) / batchN, 3),
      batch_ms: ms.map((m) => round(m, 2)),
      encode_ms: round(median(enc), 2),
    };
  };
  const batchHosts = await batchRun((b, i) => hostAt(1 + b, i));
  const batchPrefixes = await batchRun((b, i) => {
    const v = b * batchN + i; // 12.0.0.0/8 + /24s
    return { cidr: { family: 4, addr: Uint8Array.of(12, (v >>> 8) & 0xff, v & 0xff, 0), prefixLen: 24 }, allow: true, deny: false, expiresAtMs: null };
  });
  o.log(`inserts: batch of ${batchN} hosts ${batchHosts.per_entry_us} µs/entry, prefixes ${batchPrefixes.per_entry_us} µs/entry`);

  // --- atomic replace of 10k entries. The loader keeps the previous generation installed for
  // 200 ms after a flip (packets may still use it); replaces here are spaced beyond that.
  const spacing = 300;
  const replaceRuns = o.quick ? 3 : 7;
  const sets = [makeEntrySet(4, 10_000, 0xa11), makeEntrySet(4, 10_000, 0xa12)];
  const replaceMs: number[] = [];
  for (let r = 0; r < replaceRuns; r++) {
    await sleep(spacing);
    const entries = sets[r % 2]!.entries;
    const t = ns();
    await o.filter.replacePolicy(o.attachmentId, { mode: "allowlist", audit: false, entries });
    replaceMs.push(usSince(t) / 1000);
  }
  o.log(`inserts: replace 10k p50 ${median(replaceMs).toFixed(2)} ms`);
  const mim = JSON.parse((await sh(o.progRun, ["mim-cost", o.quick ? "3" : "7"], { timeoutMs: 60_000 })).stdout) as { create_ms: number[]; install_ms: number[] };

  // --- bpftool baselines on the live exact-hash inner map of the active generation
  const inner = await pinActiveV4Exact(o.pinRoot, o.attachmentId);
  const procN = o.quick ? 50 : 200;
  const procMs: number[] = [];
  const pdl = new Deadline(60_000);
  for (let i = 0; i < procN && !pdl.expired(); i++) {
    const [key, value] = bpftoolKV(hostAt(8, i));
    const t = ns();
    await sh("bpftool", ["map", "update", "pinned", inner, "key", "hex", ...key, "value", "hex", ...value], { timeoutMs: 10_000 });
    procMs.push(usSince(t) / 1000);
  }
  o.log(`inserts: bpftool process per update ${mean(procMs).toFixed(2)} ms/entry`);
  const batchLines = Array.from({ length: o.quick ? 500 : 2000 }, (_, i) => {
    const [key, value] = bpftoolKV(hostAt(9, i));
    return `map update pinned ${inner} key hex ${key.join(" ")} value hex ${value.join(" ")}`;
  });
  const batchFile = path.join(o.tmpDir, "bpftool-batch.txt");
  await writeFile(batchFile, batchLines.join("\n") + "\n");
  const tb = ns();
  await sh("bpftool", ["batch", "file", batchFile], { timeoutMs: 60_000 });
  const batchTotalMs = usSince(tb) / 1000;

  return {
    map_size_before: "allowlist of 10k IPv4 entries (half /32 hosts, half prefixes) before the single inserts",
    counters_round_trip: counters,
    single_insert: single,
    batch_insert_hosts: batchHosts,
    batch_insert_prefixes: batchPrefixes,
    replace_10k: {
      runs: replaceMs.length,
      entries: 10_000,
      p50_ms: round(median(replaceMs), 2),
      min_ms: round(Math.min(...replaceMs), 2),
      max_ms: round(Math.max(...replaceMs), 2),
      samples_ms: replaceMs.map((m) => round(m, 2)),
      spacing_ms: spacing,
    },
    replace_breakdown: {
      create_inner_hash_p50_ms: round(median(mim.create_ms), 2),
      install_outer_slot_p50_ms: round(median(mim.install_ms), 2),
      create_inner_hash_ms: mim.create_ms.map((x) => round(x, 2)),
      install_outer_slot_ms: mim.install_ms.map((x) => round(x, 2)),
      note:
        "a REPLACE creates 4 inner maps (2 exact hashes of NF_MAX_ENTRIES buckets, 2 LPM tries) and installs each into its ARRAY_OF_MAPS slot; " +
        "a user-space update of a map-in-map slot waits for an RCU grace period (kernel maybe_wait_bpf_programs), so 4 installs cost 4 grace periods",
    },
    bpftool_process_per_update: {
      count: procMs.length,
      per_entry_ms: round(mean(procMs), 2),
      p50_ms: round(percentile(procMs, 50), 2),
      p99_ms: round(percentile(procMs, 99), 2),
      map: "the attachment's live IPv4 exact-match hash (active generation), pinned for bpftool",
    },
    bpftool_batch: { count: batchLines.length, total_ms: round(batchTotalMs, 1), per_entry_us: round((batchTotalMs * 1000) / batchLines.length, 2) },
  };
}

/** Key and value bytes of one exact-hash entry (struct nf_exact_v4_key, struct nf_entry) as bpftool hex words. */
function bpftoolKV(e: FilterEntry): [string[], string[]] {
  const hx = (b: Uint8Array | Buffer) => Array.from(b, (x) => x.toString(16).padStart(2, "0"));
  const v = Buffer.alloc(16); // expires_ns 0, rule_id, flags, prefixlen
  v.writeUInt32LE(e.ruleId ?? 0, 8);
  v[12] = 1; // NF_ENTRY_ALLOW
  v[13] = e.cidr.prefixLen;
  return [hx(e.cidr.addr), hx(v)];
}

/** Pins the active generation's IPv4 exact-hash inner map (found through the pinned outer map and state). */
async function pinActiveV4Exact(pinRoot: string, id: string): Promise<string> {
  const dir = path.join(pinRoot, id);
  const state = JSON.parse((await sh("bpftool", ["-j", "map", "lookup", "pinned", path.join(dir, "state"), "key", "0", "0", "0", "0"])).stdout) as {
    value: string[];
  };
  // struct nf_state: active_gen at offset 8 (u32, little endian)
  const gen = Number.parseInt(state.value[8] ?? "", 16) & 1;
  const outer = JSON.parse(
    (await sh("bpftool", ["-j", "map", "lookup", "pinned", path.join(dir, "v4_exact"), "key", String(gen), "0", "0", "0"])).stdout,
  ) as { value: string[] | number };
  const innerId = typeof outer.value === "number" ? outer.value : Buffer.from(outer.value.map((x) => Number.parseInt(x, 16))).readUInt32LE(0);
  const pin = path.join(pinRoot, "bench-v4-exact-inner");
  await sh("bpftool", ["map", "pin", "id", String(innerId), pin]);
  return pin;
}
