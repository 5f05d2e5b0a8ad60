/**
 * Issue 13, kernel part: the data path as an operator runs it. Run as root after `npm run build`
 * and `make -C bpf loader`, one benchmark at a time on the machine:
 *
 *   flock /tmp/netfence-bench.lock node dist/bench/datapath/operator-path.js [--rounds 15] [--repeat 200000] [--out FILE]
 *
 * 1. Memory per attachment (bpftool map show memlock of every map the attachment owns, the large
 *    inner hashes included; the host-wide shared maps left out) attached with one entry, then
 *    after a replace with 1k and 100k entries per family, then after a replace back to one entry
 *    once the loader's idle loop has shrunk the tables.
 * 2. Per-packet cost (BPF_PROG_TEST_RUN via prog-run) with 100k entries per family:
 *      netfence_pushed  attached with a one-entry policy (the SubscribedAck), then the 100k pushed
 *                       by one replace (a BulkUpdate) — the operator's path
 *      netfence_initial attached with the 100k as its initial policy (the favourable case)
 *      noop, single_lpm same-run baselines (bench/datapath/noop.bpf.c, single_lpm.bpf.c)
 *      hash_lpm         diagnostic: the exact-hash-then-trie lookup alone in static maps (hash_lpm.bpf.c),
 *                       the floor any hash lookup sets on this machine
 *    all interleaved round by round; p50 and p99 over rounds of each, and of each minus no-op.
 * Writes bench/results/datapath-operator-path.json. Never asserts anything about time.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import pino from "pino";
import type { FilterEntry, FilterPolicy } from "../../daemon/src/datapath/filter.js";
import { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { Sandbox, sh, requireKernel } from "../../test/helpers/sandbox.js";
import { parseCidr } from "@netfence/proto/parse";
import { loadAverage, machineRecord, writeJsonFile } from "../lib/run-record.js";
import { percentile } from "../lib/stats.js";
import { withTimeout } from "../lib/time-limit.js";
import { makeEntrySet, type EntrySet } from "./entry-sets.js";
import { encodeEntriesFile } from "./entries-file.js";
import { tcpSynFrame } from "./packets.js";
import { loadBaseline, testRun, type ProgRunResult } from "./prog-run.js";
import { attachmentMemory, type AttachmentMemory } from "./attachment-memory.js";

const LIMIT_MS = 8 * 60_000;
const N = 100_000;
const SRC4 = Uint8Array.of(10, 99, 0, 2);
const SRC6 = Uint8Array.from([0xfd, 0, 0, 0x99, ...new Array<number>(11).fill(0), 2]);
/** The one entry a control plane acks at Subscribed (TEST-NET-1, never probed). */
const ACK_ENTRY: FilterEntry = { cidr: parseCidr("192.0.2.1/32"), allow: true, deny: false, expiresAtMs: null };
const allowlist = (entries: readonly FilterEntry[]): FilterPolicy => ({ mode: "allowlist", audit: false, entries: [...entries] });

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i === -1 ? dflt : (process.argv[i + 1] ?? dflt);
}

const r1 = (v: number) => Math.round(v * 10) / 10;
function stat(v: readonly number[]) {
  return { p50: r1(percentile(v, 50)), p99: r1(percentile(v, 99)), rounds: v.map(r1) };
}

async function main(): Promise<void> {
  const started = Date.now();
  const loadAtStart = loadAverage();
  const root = projectRoot();
  const rounds = Number(arg("--rounds", "15"));
  const repeat = Number(arg("--repeat", "200000"));
  const out = path.resolve(arg("--out", path.join(root, "bench", "results", "datapath-operator-path.json")));
  const log = (m: string) => process.stderr.write(`[operator-path +${((Date.now() - started) / 1000).toFixed(1)}s] ${m}\n`);
  await requireKernel();
  if (!existsSync(path.join(root, "bpf", "loader", "netfence-loader"))) throw new Error("run `make -C bpf loader` first");
  await sh("make", ["-s", "-C", path.join(root, "bench", "datapath")], { timeoutMs: 120_000 });
  const buildDir = path.join(root, "bench", "datapath", "build");
  const progRun = path.join(buildDir, "prog-run");
  const sb = await Sandbox.create("nfop");
  const pinRoot = `/sys/fs/bpf/nfop-${randomBytes(4).toString("hex")}`;
  const tmpDir = await mkdtemp(path.join(os.tmpdir(), "nfop-"));
  let filter: KernelFilter | null = null;
  const cleanup = async () => {
    if (filter) {
      for (const id of await filter.listPinned().catch(() => [])) await filter.detach(id).catch(() => undefined);
      await filter.close().catch(() => undefined);
    }
    await sb.cleanup();
    await rm(pinRoot, { recursive: true, force: true }).catch(() => undefined);
    await rm(tmpDir, { recursive: true, force: true }).catch(() => undefined);
  };
  process.once("SIGINT", () => void cleanup().finally(() => process.exit(130)));
  process.once("SIGTERM", () => void cleanup().finally(() => process.exit(130)));
  try {
    await withTimeout("the operator-path benchmark", LIMIT_MS, (async () => {
      const net = await sb.network();
      const f = (filter = await KernelFilter.start({ pinRoot, logger: pino({ level: "warn" }) }));
      let slot = 1;
      const attach = (id: string, p: FilterPolicy) =>
        f.attach({ id, slot: slot++, target: { kind: "interface", name: net.hostIf, direction: "ingress" }, dns: { ipv4: null, ipv6: null, port: 0 } }, p);
      const sets = (n: number) => ({ 4: makeEntrySet(4, n, 0x4e46 + n), 6: makeEntrySet(6, n, 0x4e46 + n) }) as const;

      // ---- 1. memory per attachment
      const memory: Array<{ state: string; entries_per_family: number; memory: AttachmentMemory; tables: unknown }> = [];
      const memId = "op-mem";
      const snap = async (state: string, n: number) => {
        memory.push({ state, entries_per_family: n, memory: await attachmentMemory(pinRoot, memId), tables: await f.exactTables(memId) });
        log(`memory ${state}: ${memory.at(-1)!.memory.total_bytes} bytes`);
      };
      await attach(memId, allowlist([ACK_ENTRY]));
      await snap("attached with one entry", 0);
      for (const n of [1000, N]) {
        const s = sets(n);
        await f.replacePolicy(memId, allowlist([...s[4].entries, ...s[6].entries]));
        await snap(`after a replace with ${n} per family`, n);
      }
      await f.replacePolicy(memId, allowlist([ACK_ENTRY]));
      const end = Date.now() + 5000;
      while (Date.now() < end) {
        const t = await f.exactTables(memId);
        if (t.v4.largeCap === 0 && t.v4.otherLargeCap === 0 && t.v6.largeCap === 0 && t.v6.otherLargeCap === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await snap("after a replace back to one entry (idle loop shrank the tables)", 0);
      await f.detach(memId);

      // ---- 2. per-packet
      const s = sets(N);
      const all = [...s[4].entries, ...s[6].entries];
      const entriesFile = path.join(tmpDir, "entries.bin");
      await writeFile(entriesFile, encodeEntriesFile(all));
      const noopPin = path.join(pinRoot, "bench-noop");
      const singlePin = path.join(pinRoot, "bench-single");
      await loadBaseline(progRun, path.join(buildDir, "noop.bpf.o"), noopPin);
      await loadBaseline(progRun, path.join(buildDir, "single_lpm.bpf.o"), singlePin, entriesFile);
      const hashPin = path.join(pinRoot, "bench-hash");
      await loadBaseline(progRun, path.join(buildDir, "hash_lpm.bpf.o"), hashPin, entriesFile);
      await attach("op-pushed", allowlist([ACK_ENTRY]));
      const t0 = performance.now();
      await f.replacePolicy("op-pushed", allowlist(all));
      const pushMs = performance.now() - t0;
      await attach("op-initial", allowlist(all));
      const tables = { pushed: await f.exactTables("op-pushed"), initial: await f.exactTables("op-initial") };
      log(`pushed ${all.length} entries in ${pushMs.toFixed(1)} ms; tables ${JSON.stringify(tables.pushed.v4)}`);
      const probes = (set: EntrySet) => ({ host_hit: set.hostHit, prefix_hit: set.prefixHit, miss: set.miss });
      const packets = new Map<string, string>();
      for (const fam of [4, 6] as const)
        for (const [c, addr] of Object.entries(probes(s[fam]))) packets.set(`v${fam}_${c}`, tcpSynFrame(fam, fam === 4 ? SRC4 : SRC6, addr));
      const progs = new Map([
        ["noop", noopPin],
        ["single_lpm", singlePin],
        ["netfence_pushed", path.join(pinRoot, "op-pushed", "prog")],
        ["netfence_initial", path.join(pinRoot, "op-initial", "prog")],
        ["hash_lpm", hashPin],
      ]);
      const results = await testRun(progRun, repeat, rounds, packets, progs, 60_000 + 5 * 6 * rounds * repeat * 0.002);
      const pick = (prog: string, pkt: string): ProgRunResult => results.find((x) => x.prog === prog && x.pkt === pkt)!;
      const per_packet = [...packets.keys()].map((pkt) => {
        const noop = pick("noop", pkt).ns;
        const row: Record<string, unknown> = { probe: pkt, noop_ns: stat(noop) };
        for (const p of ["single_lpm", "netfence_pushed", "netfence_initial", "hash_lpm"]) {
          const r = pick(p, pkt);
          row[p] = { ns: stat(r.ns), over_noop_ns: stat(r.ns.map((v, i) => v - noop[i]!)), verdict: r.retval === -1 ? "pass" : r.retval === 2 ? "drop" : r.retval };
        }
        return row;
      });
      await writeJsonFile(out, {
        benchmark: "datapath-operator-path (issue 13, kernel)",
        command: `flock /tmp/netfence-bench.lock node dist/bench/datapath/operator-path.js --rounds ${rounds} --repeat ${repeat}`,
        machine: await machineRecord(loadAtStart, "2 vCPUs shared with other engineers' tests; runs serialised by flock /tmp/netfence-bench.lock"),
        units: { _ns: "ns per packet, kernel-reported average of `repeat` runs, one figure per round", _bytes: "bytes (bpftool bytes_memlock)" },
        memory_per_attachment: memory,
        per_packet: { entries_per_family: N, repeat, rounds, push_replace_ms: r1(pushMs), tables, cases: per_packet },
        duration_s: Math.round((Date.now() - started) / 1000),
      });
      log(`written ${out}`);
    })());
  } finally {
    await cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`operator-path failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
