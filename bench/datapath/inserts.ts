import { writeFile } from "node:fs/promises";
import path from "node:path";
import type { FilterEntry, FilterPolicy } from "../../daemon/src/datapath/filter.js";
import type { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import { encodeEntries } from "../../daemon/src/datapath/wire-format.js";
import { sh } from "../../test/helpers/sandbox.js";
import { mean, median, percentile, round } from "../lib/stats.js";
import { Deadline } from "../lib/time-limit.js";
import { makeEntrySet } from "./entry-sets.js";
import { encodeEntriesFile } from "./entries-file.js";

/**
 * Benchmark 3: policy update latency from TypeScript through the loader child into the kernel,
 * against `bpftool map update` run as one process per entry on the same (pinned) kernel map.
 *
 *   single_insert   KernelFilter.upsertEntries(id, [one /32]) awaited one after another
 *   batch_insert_*  one upsertEntries call with 10k entries (hosts: exact hash; prefixes: LPM trie)
 *   replace_10k     KernelFilter.replacePolicy with 10k entries (a whole new generation + flip)
 *   bpftool_*       the attachment's live IPv4 exact hash (see bpftoolTarget), updated by
 *                   `bpftool map update pinned …` (a process per entry) and by `bpftool batch`
 */

export interface InsertOptions {
  readonly filter: KernelFilter;
  readonly attach: (id: string, policy: FilterPolicy) => Promise<void>;
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
  /** The same with 10k /32 entries only (the DNS-learned case), on an attachment created with 10k /32 entries. */
  readonly replace_10k_hosts: {
    readonly runs: number;
    readonly entries: number;
    readonly p50_ms: number;
    readonly min_ms: number;
    readonly max_ms: number;
    readonly samples_ms: readonly number[];
  };
  /** Diagnostic (prog-run mim-cost): the per-table kernel work of a REPLACE besides filling entries. */
  readonly replace_breakdown: {
    readonly create_inner_hash_p50_ms: number;
    readonly install_outer_slot_p50_ms: number;
    readonly create_inner_hash_ms: readonly number[];
    readonly install_outer_slot_ms: readonly number[];
    readonly note: string;
  };
  /** Diagnostic (prog-run replace-cost): today's replace vs filling the already-installed empty inactive maps, same 10k entries. */
  readonly replace_strategies: {
    readonly fresh_p50_ms: number;
    readonly in_place_p50_ms: number;
    readonly in_place_hash_fill_p50_ms: number;
    readonly in_place_lpm_fill_p50_ms: number;
    readonly fresh_ms: readonly number[];
    readonly in_place_ms: readonly number[];
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
  // Attached with the 10k base set (the data path may size its exact hashes from the initial
  // policy); every measured insert is deleted again afterwards, so the live tables stay at the
  // base size plus one batch and never outgrow what an attachment of this size is built for.
  const base = makeEntrySet(4, 10_000, 0xbe7c);
  await o.attach(o.attachmentId, { mode: "allowlist", audit: false, entries: base.entries });
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
  await o.filter.deleteEntries(o.attachmentId, Array.from({ length: warmup + want }, (_, i) => hostAt(0, i).cidr));
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
      await o.filter.deleteEntries(o.attachmentId, entries.map((e) => e.cidr));
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
  // Hosts only: on an attachment created with 10k hosts, so its exact hashes are sized for
  // them (the data path may size them from the initial policy and spill what does not fit).
  const hostSets = [0, 1].map((k) => Array.from({ length: 10_000 }, (_, i) => hostAt(10 + k, i)));
  const hostsId = `${o.attachmentId}-hosts`;
  await o.attach(hostsId, { mode: "allowlist", audit: false, entries: hostSets[0]! });
  const replaceHostsMs: number[] = [];
  for (let r = 0; r < replaceRuns; r++) {
    await sleep(spacing);
    const t = ns();
    await o.filter.replacePolicy(hostsId, { mode: "allowlist", audit: false, entries: hostSets[(r + 1) % 2]! });
    replaceHostsMs.push(usSince(t) / 1000);
  }
  await o.filter.detach(hostsId);
  o.log(`inserts: replace 10k hosts p50 ${median(replaceHostsMs).toFixed(2)} ms`);
  const mim = JSON.parse((await sh(o.progRun, ["mim-cost", o.quick ? "3" : "7"], { timeoutMs: 60_000 })).stdout) as { create_ms: number[]; install_ms: number[] };
  const replaceFile = path.join(o.tmpDir, "replace-10k.bin");
  await writeFile(replaceFile, encodeEntriesFile(sets[0]!.entries));
  const rc = JSON.parse((await sh(o.progRun, ["replace-cost", replaceFile, o.quick ? "2" : "5"], { timeoutMs: 120_000 })).stdout) as {
    fresh_ms: number[];
    in_place_ms: number[];
    in_place_hash_fill_ms: number[];
    in_place_lpm_fill_ms: number[];
  };
  o.log(`inserts: replace strategies: fresh p50 ${median(rc.fresh_ms).toFixed(1)} ms, in place p50 ${median(rc.in_place_ms).toFixed(1)} ms`);

  // --- bpftool baselines on the attachment's live IPv4 exact hash
  const target = await bpftoolTarget(o.pinRoot, o.attachmentId);
  const procN = o.quick ? 50 : 200;
  const procMs: number[] = [];
  const pdl = new Deadline(60_000);
  for (let i = 0; i < procN && !pdl.expired(); i++) {
    const [key, value] = bpftoolKV(target, hostAt(8, i));
    const t = ns();
    await sh("bpftool", ["map", "update", "pinned", target.pin, "key", "hex", ...key, "value", "hex", ...value], { timeoutMs: 10_000 });
    procMs.push(usSince(t) / 1000);
  }
  o.log(`inserts: bpftool process per update ${mean(procMs).toFixed(2)} ms/entry`);
  const batchLines = Array.from({ length: o.quick ? 500 : 2000 }, (_, i) => {
    const [key, value] = bpftoolKV(target, hostAt(9, i));
    return `map update pinned ${target.pin} key hex ${key.join(" ")} value hex ${value.join(" ")}`;
  });
  const batchFile = path.join(o.tmpDir, "bpftool-batch.txt");
  await writeFile(batchFile, batchLines.join("\n") + "\n");
  const tb = ns();
  await sh("bpftool", ["batch", "file", batchFile], { timeoutMs: 60_000 });
  const batchTotalMs = usSince(tb) / 1000;

  return {
    map_size_before: "attached with an allowlist of 10k IPv4 entries (half /32 hosts, half prefixes); the entries of each measured phase are deleted after it",
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
    replace_10k_hosts: {
      runs: replaceHostsMs.length,
      entries: 10_000,
      p50_ms: round(median(replaceHostsMs), 2),
      min_ms: round(Math.min(...replaceHostsMs), 2),
      max_ms: round(Math.max(...replaceHostsMs), 2),
      samples_ms: replaceHostsMs.map((m) => round(m, 2)),
    },
    replace_breakdown: {
      create_inner_hash_p50_ms: round(median(mim.create_ms), 2),
      install_outer_slot_p50_ms: round(median(mim.install_ms), 2),
      create_inner_hash_ms: mim.create_ms.map((x) => round(x, 2)),
      install_outer_slot_ms: mim.install_ms.map((x) => round(x, 2)),
      note:
        "the map-in-map double-buffering design (netfence layout 1) made every REPLACE create 4 inner maps (2 exact hashes of 262144 buckets, 2 LPM tries) and install each into its ARRAY_OF_MAPS slot; " +
        "a user-space update of a map-in-map slot waits for an RCU grace period (kernel maybe_wait_bpf_programs), so 4 installs cost 4 grace periods",
    },
    replace_strategies: {
      fresh_p50_ms: round(median(rc.fresh_ms), 2),
      in_place_p50_ms: round(median(rc.in_place_ms), 2),
      in_place_hash_fill_p50_ms: round(median(rc.in_place_hash_fill_ms), 2),
      in_place_lpm_fill_p50_ms: round(median(rc.in_place_lpm_fill_ms), 2),
      fresh_ms: rc.fresh_ms.map((x) => round(x, 2)),
      in_place_ms: rc.in_place_ms.map((x) => round(x, 2)),
      note:
        "in C, no IPC, the same 10k IPv4 entries into netfence-shaped double buffers (4 ARRAY_OF_MAPS × 2 slots): " +
        "fresh = create 4 inner maps, fill, install into the inactive slot, flip (the layout-1 REPLACE); " +
        "in_place = fill the empty maps already installed in the inactive slot, flip (empty maps re-installed off the clock); " +
        "hashes are filled with bpf_map_update_batch, LPM tries element by element (the kernel has no batch update for them)",
    },
    bpftool_process_per_update: {
      count: procMs.length,
      per_entry_ms: round(mean(procMs), 2),
      p50_ms: round(percentile(procMs, 50), 2),
      p99_ms: round(percentile(procMs, 99), 2),
      map: target.description,
    },
    bpftool_batch: { count: batchLines.length, total_ms: round(batchTotalMs, 1), per_entry_us: round((batchTotalMs * 1000) / batchLines.length, 2) },
  };
}

/** A pinned map bpftool can write /32 entries into: the attachment's live IPv4 exact hash. */
interface BpftoolTarget {
  readonly pin: string;
  /** Bytes before the address in the key (the generation, for data-path layouts that key by generation). */
  readonly keyPrefix: Buffer;
  readonly description: string;
}

/** Key and value bytes of one exact-hash entry (netfence's nf_entry: deadline 0, rule id, allow flag, prefix length) as bpftool hex words. */
function bpftoolKV(t: BpftoolTarget, e: FilterEntry): [string[], string[]] {
  const hx = (b: Uint8Array | Buffer) => Array.from(b, (x) => x.toString(16).padStart(2, "0"));
  const v = Buffer.alloc(16);
  v.writeUInt32LE(e.ruleId ?? 0, 8);
  v[12] = 1; // NF_ENTRY_ALLOW
  v[13] = e.cidr.prefixLen;
  return [[...hx(t.keyPrefix), ...hx(e.cidr.addr)], hx(v)];
}

interface MapInfo {
  readonly type: string;
  readonly bytes_key: number;
  readonly bytes_value: number;
}

/**
 * Finds the live IPv4 exact hash of an attachment from its pins, whichever way the data path
 * double-buffers: an ARRAY_OF_MAPS per table (the active generation's inner map is pinned for
 * bpftool) or one hash keyed by (generation, address) (used as pinned, keys prefixed by the
 * active generation).
 */
async function bpftoolTarget(pinRoot: string, id: string): Promise<BpftoolTarget> {
  const dir = path.join(pinRoot, id);
  const state = JSON.parse((await sh("bpftool", ["-j", "map", "lookup", "pinned", path.join(dir, "state"), "key", "0", "0", "0", "0"])).stdout) as {
    value: string[];
  };
  const gen = Number.parseInt(state.value[8] ?? "", 16) & 1; // struct nf_state: active_gen at offset 8
  const exactPin = path.join(dir, "v4_exact");
  const info = JSON.parse((await sh("bpftool", ["-j", "map", "show", "pinned", exactPin])).stdout) as MapInfo;
  if (info.type === "array_of_maps") {
    const outer = JSON.parse((await sh("bpftool", ["-j", "map", "lookup", "pinned", exactPin, "key", String(gen), "0", "0", "0"])).stdout) as {
      value: string[] | number;
    };
    const innerId = typeof outer.value === "number" ? outer.value : Buffer.from(outer.value.map((x) => Number.parseInt(x, 16))).readUInt32LE(0);
    const pin = path.join(pinRoot, "bench-v4-exact-inner");
    await sh("bpftool", ["map", "pin", "id", String(innerId), pin]);
    const inner = JSON.parse((await sh("bpftool", ["-j", "map", "show", "pinned", pin])).stdout) as MapInfo;
    if (inner.bytes_key !== 4 || inner.bytes_value !== 16) throw new Error(`unexpected inner exact map shape ${JSON.stringify(inner)}`);
    return { pin, keyPrefix: Buffer.alloc(0), description: "the attachment's live IPv4 exact-match hash (active generation's inner map of the ARRAY_OF_MAPS), pinned for bpftool" };
  }
  if (info.type === "hash" && info.bytes_value === 16 && (info.bytes_key === 4 || info.bytes_key === 8)) {
    const keyPrefix = Buffer.alloc(info.bytes_key - 4);
    if (keyPrefix.length) keyPrefix.writeUInt32LE(gen, 0);
    return { pin: exactPin, keyPrefix, description: `the attachment's live IPv4 exact-match hash as pinned (${info.bytes_key}-byte keys${keyPrefix.length ? ", active generation first" : ""})` };
  }
  throw new Error(`cannot drive ${exactPin} with bpftool: unexpected map ${JSON.stringify(info)}`);
}
