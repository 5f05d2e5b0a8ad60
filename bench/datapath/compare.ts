/**
 * Per-packet cost of this checkout's netfence_tc against ANOTHER checkout's, in one run:
 *
 *   node dist/bench/datapath/compare.js --old /path/to/other/checkout [--quick]
 *
 * The other checkout must be built (its dist/, bpf/loader/netfence-loader, bpf/prebuilt). Each side's
 * program is loaded, filled and attached by its OWN KernelFilter and loader (the two may speak
 * different loader protocols and layouts), to two host-side veths of one throwaway sandbox, with the
 * same policy; then BPF_PROG_TEST_RUN runs the same frames through no-op, old and new, interleaved
 * round by round (bench/datapath/prog-run.c), so machine drift hits both alike. Figures: median over
 * rounds of (program − no-op) and of (new − old) in the same round. Prints a Markdown table; writes
 * nothing. Used to keep a data-path change's per-packet cost in check (issue 10: docs/benchmarks.md).
 */
import { rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import pino from "pino";
import type { AttachSpec, FilterPolicy } from "../../daemon/src/datapath/filter.js";
import { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { requireKernel, Sandbox, sh } from "../../test/helpers/sandbox.js";
import { median } from "../lib/stats.js";
import { makeEntrySet } from "./entry-sets.js";
import { tcpSynFrame } from "./packets.js";
import { loadBaseline, testRun, type ProgRunResult } from "./prog-run.js";

/** The part of KernelFilter both checkouts have (the other one is imported from its own dist/). */
interface DataPath {
  attach(spec: AttachSpec, policy: FilterPolicy): Promise<unknown>;
  detach(id: string): Promise<void>;
  close(): Promise<void>;
}

const CASES = ["host_hit", "prefix_hit", "miss"] as const;
const SRC4 = Uint8Array.of(10, 99, 0, 2);
const SRC6 = Uint8Array.from([0xfd, 0, 0, 0x99, ...new Array<number>(11).fill(0), 2]);

function pick(results: readonly ProgRunResult[], prog: string, pkt: string): ProgRunResult {
  const r = results.find((x) => x.prog === prog && x.pkt === pkt);
  if (!r) throw new Error(`no result for ${prog}/${pkt}`);
  return r;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const oldAt = argv.indexOf("--old");
  if (oldAt === -1 || !argv[oldAt + 1]) throw new Error("usage: compare.js --old CHECKOUT [--quick]");
  const oldRoot = path.resolve(argv[oldAt + 1]!);
  const quick = argv.includes("--quick");
  const root = projectRoot();
  await requireKernel();
  await sh("make", ["-s", "-C", path.join(root, "bench", "datapath")], { timeoutMs: 120_000 });
  const buildDir = path.join(root, "bench", "datapath", "build");
  const progRun = path.join(buildDir, "prog-run");
  const sb = await Sandbox.create("nfc");
  const pins = { new: `/sys/fs/bpf/nfcmp-new-${randomBytes(3).toString("hex")}`, old: `/sys/fs/bpf/nfcmp-old-${randomBytes(3).toString("hex")}`, noop: "" };
  pins.noop = path.join(pins.new, "noop");
  const filters: DataPath[] = [];
  try {
    const net = await sb.network();
    const nb = await sb.neighbour(net);
    const logger = pino({ level: "warn" });
    const mod = (await import(path.join(oldRoot, "dist", "daemon", "src", "datapath", "kernel-filter.js"))) as { KernelFilter: { start(o: object): Promise<DataPath> } };
    const newer: DataPath = await KernelFilter.start({ pinRoot: pins.new, logger });
    filters.push(newer);
    const older = await mod.KernelFilter.start({
      pinRoot: pins.old,
      loaderPath: path.join(oldRoot, "bpf", "loader", "netfence-loader"),
      bpfDir: path.join(oldRoot, "bpf", "prebuilt"),
      logger,
    });
    filters.push(older);
    await loadBaseline(progRun, path.join(buildDir, "noop.bpf.o"), pins.noop);
    const repeat = quick ? 100_000 : 200_000;
    const rounds = quick ? 3 : 9;
    const rows: string[] = [];
    const attachMs: string[] = [];
    let slot = 1;
    for (const n of [10, 1000, 10_000, 100_000]) {
      const sets = { 4: makeEntrySet(4, n, 0x4e46 + n), 6: makeEntrySet(6, n, 0x4e46 + n) } as const;
      const policy: FilterPolicy = { mode: "allowlist", audit: false, entries: [...sets[4].entries, ...sets[6].entries] };
      const spec = (id: string, ifname: string): AttachSpec => ({
        id, slot: slot++, target: { kind: "interface", name: ifname, direction: "ingress" }, dns: { ipv4: null, ipv6: null, port: 0 },
      });
      const id = `cmp-${n}`;
      const t0 = performance.now();
      await newer.attach(spec(id, net.hostIf), policy);
      const t1 = performance.now();
      await older.attach(spec(id, nb.hostIf), policy);
      attachMs.push(`${n.toLocaleString("en")}: old ${(performance.now() - t1).toFixed(0)} ms, new ${(t1 - t0).toFixed(0)} ms`);
      const packets = new Map<string, string>();
      for (const fam of [4, 6] as const) {
        for (const c of CASES) {
          const dst = c === "host_hit" ? sets[fam].hostHit : c === "prefix_hit" ? sets[fam].prefixHit : sets[fam].miss;
          packets.set(`v${fam}_${c}`, tcpSynFrame(fam, fam === 4 ? SRC4 : SRC6, dst));
        }
      }
      const progs = new Map([["noop", pins.noop], ["old", path.join(pins.old, id, "prog")], ["new", path.join(pins.new, id, "prog")]]);
      const results = await testRun(progRun, repeat, rounds, packets, progs, 30_000 + 3 * 6 * rounds * repeat * 0.002);
      for (const pkt of packets.keys()) {
        const noop = pick(results, "noop", pkt);
        const o = pick(results, "old", pkt);
        const nw = pick(results, "new", pkt);
        if (o.retval !== nw.retval) throw new Error(`${pkt} at ${n}: old returned ${o.retval}, new ${nw.retval}`);
        const over = (r: ProgRunResult) => median(r.ns.map((v, i) => v - noop.ns[i]!));
        const delta = median(nw.ns.map((v, i) => v - o.ns[i]!));
        rows.push(`| ${n.toLocaleString("en")} | ${pkt.replace("_", " ").replace("_", " ")} | ${median(noop.ns)} | +${over(o)} | +${over(nw)} | ${delta >= 0 ? "+" : ""}${delta} |`);
      }
      await newer.detach(id);
      await older.detach(id);
      process.stderr.write(`[compare] ${n} entries/family done\n`);
    }
    const out = [
      `Per-packet cost, ${path.basename(oldRoot)} (old) vs this checkout (new), same run: BPF_PROG_TEST_RUN, repeat ${repeat}, ${rounds} interleaved rounds; ns, median over rounds; load average ${os.loadavg()[0]!.toFixed(2)} at the end.`,
      "",
      "| entries / family | probe | no-op ns | old over no-op | new over no-op | new − old (paired) |",
      "| ---: | --- | ---: | ---: | ---: | ---: |",
      ...rows,
      "",
      `Attach (LOAD + REPLACE + LINK, one each) per entries/family — ${attachMs.join("; ")}.`,
    ].join("\n");
    process.stdout.write(`${out}\n`);
  } finally {
    for (const f of filters) await f.close().catch(() => undefined);
    for (const p of [pins.new, pins.old]) await rm(p, { recursive: true, force: true }).catch(() => undefined);
    await sb.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`compare failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
