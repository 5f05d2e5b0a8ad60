import { rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { FilterPolicy } from "../../daemon/src/datapath/filter.js";
import type { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import { median, round } from "../lib/stats.js";
import { makeEntrySet, type EntrySet } from "./entry-sets.js";
import { encodeEntriesFile } from "./entries-file.js";
import { tcpSynFrame } from "./packets.js";
import { loadBaseline, testRun, type ProgRunResult } from "./prog-run.js";

/**
 * Benchmark 1: per-packet cost with BPF_PROG_TEST_RUN.
 * Three TC programs run the same crafted frames, interleaved round by round:
 *   noop       — bench/datapath/noop.bpf.c (baseline a)
 *   single_lpm — bench/datapath/single_lpm.bpf.c, every entry in one LPM trie (baseline b)
 *   netfence   — the real bpf/prebuilt/netfence_tc.bpf.o, loaded, filled (REPLACE) and attached
 *                through KernelFilter and the loader child, run from its pin <pinRoot>/<id>/prog
 * Allowlist mode: a hit is the address present, a miss the address absent (→ dropped).
 */

export interface PerPacketOptions {
  readonly filter: KernelFilter;
  /** Attaches netfence with a policy (a fresh attachment per size: the data path sizes its tables from the initial policy). */
  readonly attach: (id: string, policy: FilterPolicy) => Promise<void>;
  readonly attachmentId: string;
  readonly pinRoot: string;
  readonly progRun: string;
  readonly buildDir: string;
  readonly tmpDir: string;
  readonly sizes: readonly number[];
  readonly repeat: number;
  readonly rounds: number;
  readonly log: (msg: string) => void;
}

export type Case = "host_hit" | "prefix_hit" | "miss";
const CASES: readonly Case[] = ["host_hit", "prefix_hit", "miss"];
const PROGS = ["noop", "single_lpm", "netfence", "hash_lpm", "hash_lpm_mim", "hash_lpm_mim_prot"] as const;
type ProgName = (typeof PROGS)[number];
const TC_ACT_UNSPEC = -1;
const TC_ACT_SHOT = 2;

export interface CaseFigures {
  readonly entries_per_family: number;
  readonly family: 4 | 6;
  readonly case: Case;
  readonly probe: string;
  /** Median over rounds of the kernel-reported average ns per packet. */
  readonly noop_ns: number;
  readonly single_lpm_ns: number;
  readonly netfence_ns: number;
  /** Median over rounds of (program − noop) in the same round. */
  readonly single_lpm_over_noop_ns: number;
  readonly netfence_over_noop_ns: number;
  /** Same from wall-clock time (syscall duration / repeat): fractional ns, cross-check. */
  readonly wall_noop_ns: number;
  readonly wall_single_lpm_over_noop_ns: number;
  readonly wall_netfence_over_noop_ns: number;
  readonly verdicts: { readonly single_lpm: "pass" | "drop"; readonly netfence: "pass" | "drop" };
  /** Diagnostic programs (bench/datapath/hash_lpm.bpf.c): netfence's lookup design alone, static maps vs map-in-map. */
  readonly diagnostics: {
    readonly hash_lpm_ns: number;
    readonly hash_lpm_over_noop_ns: number;
    readonly hash_lpm_mim_ns: number;
    readonly hash_lpm_mim_over_noop_ns: number;
    readonly hash_lpm_mim_prot_ns: number;
    readonly hash_lpm_mim_prot_over_noop_ns: number;
  };
}

export interface DenylistMissFigures {
  readonly entries_per_family: number;
  readonly family: 4 | 6;
  readonly noop_ns: number;
  readonly netfence_ns: number;
  readonly netfence_over_noop_ns: number;
  readonly single_lpm_ns: number;
  readonly hash_lpm_ns: number;
  readonly hash_lpm_mim_ns: number;
}

export interface PerPacketResult {
  readonly method: string;
  readonly repeat: number;
  readonly rounds: number;
  readonly entry_mix: string;
  readonly programs: Record<string, string>;
  readonly cases: CaseFigures[];
  /** Diagnostic: the same miss probes with the attachment switched to denylist mode (miss → pass,
   * no drop accounting and no event): isolates lookup cost from the blocked-packet path. */
  readonly denylist_miss: DenylistMissFigures[];
}

function verdictOf(retval: number): "pass" | "drop" {
  if (retval === TC_ACT_UNSPEC) return "pass";
  if (retval === TC_ACT_SHOT) return "drop";
  throw new Error(`unexpected TC verdict ${retval}`);
}

function addrText(family: 4 | 6, a: Uint8Array): string {
  if (family === 4) return Array.from(a).join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((a[i]! << 8) | a[i + 1]!).toString(16));
  return groups.join(":");
}

const SRC4 = Uint8Array.of(10, 99, 0, 2);
const SRC6 = Uint8Array.from([0xfd, 0, 0, 0x99, ...new Array<number>(11).fill(0), 2]);

function probeOf(set: EntrySet, c: Case): Uint8Array {
  return c === "host_hit" ? set.hostHit : c === "prefix_hit" ? set.prefixHit : set.miss;
}

function pick(results: readonly ProgRunResult[], prog: string, pkt: string): ProgRunResult {
  const r = results.find((x) => x.prog === prog && x.pkt === pkt);
  if (!r) throw new Error(`prog-run returned no result for ${prog}/${pkt}`);
  return r;
}

function overNoop(a: readonly number[], noop: readonly number[]): number {
  return median(a.map((v, i) => v - noop[i]!));
}

export async function perPacketBench(o: PerPacketOptions): Promise<PerPacketResult> {
  const noopPin = path.join(o.pinRoot, "bench-noop");
  await loadBaseline(o.progRun, path.join(o.buildDir, "noop.bpf.o"), noopPin);
  const cases: CaseFigures[] = [];
  const denylist: DenylistMissFigures[] = [];
  // One prog-run call: programs × packets × rounds × repeat runs of ~100–400 ns; allow 2 µs each plus start-up.
  const runTimeoutMs = 30_000 + PROGS.length * 6 * o.rounds * o.repeat * 0.002;
  for (const n of o.sizes) {
    const sets = { 4: makeEntrySet(4, n, 0x4e46 + n), 6: makeEntrySet(6, n, 0x4e46 + n) } as const;
    const all = [...sets[4].entries, ...sets[6].entries];
    const entriesFile = path.join(o.tmpDir, `entries-${n}.bin`);
    await writeFile(entriesFile, encodeEntriesFile(all));
    const singlePin = path.join(o.pinRoot, `bench-single-${n}`);
    const hashPin = path.join(o.pinRoot, `bench-hash-${n}`);
    const mimPin = path.join(o.pinRoot, `bench-mim-${n}`);
    const protPin = path.join(o.pinRoot, `bench-prot-${n}`);
    const t0 = performance.now();
    await loadBaseline(o.progRun, path.join(o.buildDir, "single_lpm.bpf.o"), singlePin, entriesFile);
    await loadBaseline(o.progRun, path.join(o.buildDir, "hash_lpm.bpf.o"), hashPin, entriesFile);
    await loadBaseline(o.progRun, path.join(o.buildDir, "hash_lpm_mim.bpf.o"), mimPin, entriesFile);
    await loadBaseline(o.progRun, path.join(o.buildDir, "hash_lpm_mim_prot.bpf.o"), protPin, entriesFile);
    const t1 = performance.now();
    const id = `${o.attachmentId}-${n}`;
    await o.attach(id, { mode: "allowlist", audit: false, entries: all });
    const netfencePin = path.join(o.pinRoot, id, "prog");
    const t2 = performance.now();
    o.log(`per-packet: ${n} entries/family loaded (4 baselines ${(t1 - t0).toFixed(0)} ms, netfence attach ${(t2 - t1).toFixed(0)} ms)`);

    const packets = new Map<string, string>();
    for (const fam of [4, 6] as const) {
      for (const c of CASES) packets.set(`v${fam}_${c}`, tcpSynFrame(fam, fam === 4 ? SRC4 : SRC6, probeOf(sets[fam], c)));
    }
    const progs = new Map<ProgName, string>([
      ["noop", noopPin],
      ["single_lpm", singlePin],
      ["netfence", netfencePin],
      ["hash_lpm", hashPin],
      ["hash_lpm_mim", mimPin],
      ["hash_lpm_mim_prot", protPin],
    ]);
    const results = await testRun(o.progRun, o.repeat, o.rounds, packets, progs, runTimeoutMs);
    for (const fam of [4, 6] as const) {
      for (const c of CASES) {
        const pkt = `v${fam}_${c}`;
        const noop = pick(results, "noop", pkt);
        const single = pick(results, "single_lpm", pkt);
        const nf = pick(results, "netfence", pkt);
        const hash = pick(results, "hash_lpm", pkt);
        const mim = pick(results, "hash_lpm_mim", pkt);
        const prot = pick(results, "hash_lpm_mim_prot", pkt);
        const want = c === "miss" ? "drop" : "pass";
        const verdicts = { single_lpm: verdictOf(single.retval), netfence: verdictOf(nf.retval) };
        for (const r of [single, nf, hash, mim, prot]) {
          if (verdictOf(r.retval) !== want) throw new Error(`${pkt} at ${n} entries: expected ${want}, ${r.prog} said ${verdictOf(r.retval)}`);
        }
        cases.push({
          entries_per_family: n,
          family: fam,
          case: c,
          probe: addrText(fam, probeOf(sets[fam], c)),
          noop_ns: median(noop.ns),
          single_lpm_ns: median(single.ns),
          netfence_ns: median(nf.ns),
          single_lpm_over_noop_ns: overNoop(single.ns, noop.ns),
          netfence_over_noop_ns: overNoop(nf.ns, noop.ns),
          wall_noop_ns: round(median(noop.wall)),
          wall_single_lpm_over_noop_ns: round(overNoop(single.wall, noop.wall)),
          wall_netfence_over_noop_ns: round(overNoop(nf.wall, noop.wall)),
          verdicts,
          diagnostics: {
            hash_lpm_ns: median(hash.ns),
            hash_lpm_over_noop_ns: overNoop(hash.ns, noop.ns),
            hash_lpm_mim_ns: median(mim.ns),
            hash_lpm_mim_over_noop_ns: overNoop(mim.ns, noop.ns),
            hash_lpm_mim_prot_ns: median(prot.ns),
            hash_lpm_mim_prot_over_noop_ns: overNoop(prot.ns, noop.ns),
          },
        });
      }
    }

    // Diagnostic: misses in denylist mode (lookup only, the packet passes, no drop/event path).
    await o.filter.setMode(id, "denylist", false);
    const missPackets = new Map([...packets].filter(([k]) => k.endsWith("_miss")));
    const dl = await testRun(o.progRun, o.repeat, o.rounds, missPackets, progs, runTimeoutMs);
    await o.filter.detach(id);
    for (const fam of [4, 6] as const) {
      const pkt = `v${fam}_miss`;
      const noop = pick(dl, "noop", pkt);
      const nf = pick(dl, "netfence", pkt);
      if (verdictOf(nf.retval) !== "pass") throw new Error(`${pkt} in denylist mode was dropped`);
      denylist.push({
        entries_per_family: n,
        family: fam,
        noop_ns: median(noop.ns),
        netfence_ns: median(nf.ns),
        netfence_over_noop_ns: overNoop(nf.ns, noop.ns),
        single_lpm_ns: median(pick(dl, "single_lpm", pkt).ns),
        hash_lpm_ns: median(pick(dl, "hash_lpm", pkt).ns),
        hash_lpm_mim_ns: median(pick(dl, "hash_lpm_mim", pkt).ns),
      });
    }
    for (const pin of [singlePin, hashPin, mimPin, protPin]) await rm(pin, { force: true });
    await rm(entriesFile, { force: true });
    const c100 = cases.filter((x) => x.entries_per_family === n);
    o.log(
      `per-packet ${n}: ` +
        c100
          .map(
            (x) =>
              `v${x.family} ${x.case} noop ${x.noop_ns} single +${x.single_lpm_over_noop_ns} netfence +${x.netfence_over_noop_ns}` +
              ` (hash_lpm +${x.diagnostics.hash_lpm_over_noop_ns}, mim +${x.diagnostics.hash_lpm_mim_over_noop_ns})`,
          )
          .join("; "),
    );
  }
  await rm(noopPin, { force: true });
  return {
    method:
      "BPF_PROG_TEST_RUN (libbpf bpf_prog_test_run_opts) on pinned programs, repeat per run as given, " +
      "rounds interleaved program by program and packet by packet; figures are medians over rounds of the kernel-reported ns/packet",
    repeat: o.repeat,
    rounds: o.rounds,
    entry_mix:
      "per family: half single hosts (/32, /128), half prefixes (IPv4 /16–/30, IPv6 /32–/64) at random public addresses; " +
      "netfence holds IPv4 and IPv6 sets together (hosts in its exact hashes, prefixes in its LPM tries), single_lpm holds them in one LPM trie per family",
    programs: {
      noop: "bench/datapath/noop.bpf.c — returns TC_ACT_UNSPEC (baseline a)",
      single_lpm: "bench/datapath/single_lpm.bpf.c — one LPM trie per family holding every entry, the Go original's design (baseline b)",
      netfence: "bpf/prebuilt/netfence_tc.bpf.o attached with the size's policy through KernelFilter + the loader (a fresh attachment per size), run from its pin <pinRoot>/<id>/prog",
      hash_lpm: "diagnostic, bench/datapath/hash_lpm.bpf.c — netfence's lookup design alone (exact hash, then LPM) in static maps",
      hash_lpm_mim: "diagnostic, same with the maps behind an ARRAY_OF_MAPS slot as netfence's generations are",
      hash_lpm_mim_prot: "diagnostic, hash_lpm_mim plus a lookup in an empty LPM trie first, as netfence's protected-set check does on every packet",
    },
    cases,
    denylist_miss: denylist,
  };
}
