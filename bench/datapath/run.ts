/**
 * Netfence data-path benchmarks (issue 3, "bench/datapath"). Run as root after `npm run build`
 * and `make -C bpf loader`:
 *
 *   node dist/bench/datapath/run.js [--quick] [--only per-packet,throughput,inserts] [--out FILE]
 *   node dist/bench/datapath/run.js --render [FILE]   re-render targets + README results from a results file
 *
 * Builds its baselines (`make -C bench/datapath`), creates a throwaway sandbox (network
 * namespaces, veths, a bridge, a bpffs pin root /sys/fs/bpf/nfbench-<rand>), runs
 *   1. per-packet cost with BPF_PROG_TEST_RUN (no-op vs single LPM trie vs netfence_tc),
 *   2. TCP throughput and RTT through the filtered veth (no filter vs netfence vs nftables vs iptables),
 *   3. insert/replace latency through KernelFilter and the loader (vs a bpftool process per update),
 * writes bench/results/datapath.json and the results section of bench/datapath/README.md, and
 * removes everything it created — also on failure, SIGINT/SIGTERM, or when the global time
 * limit expires.
 */
import type { DatapathResults } from "./results.js";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import pino from "pino";
import type { FilterPolicy } from "../../daemon/src/datapath/filter.js";
import { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { Sandbox, sh, requireKernel } from "../../test/helpers/sandbox.js";
import { machineInfo } from "../lib/machine.js";
import { withTimeout } from "../lib/time-limit.js";
import { perPacketBench, type PerPacketResult } from "./per-packet.js";
import { throughputBench, type ThroughputResult } from "./throughput.js";
import { insertBench, type InsertResult } from "./inserts.js";
import { evaluateTargets, type TargetCheck } from "./targets.js";
import { renderMarkdown } from "./report.js";

type Part = "per-packet" | "throughput" | "inserts";
const PARTS: readonly Part[] = ["per-packet", "throughput", "inserts"];
const GLOBAL_LIMIT_MS = 9 * 60_000;

interface Args {
  quick: boolean;
  only: Set<Part>;
  out: string;
  readme: string | null;
}

function parseArgs(argv: readonly string[], root: string): Args {
  const a: Args = { quick: false, only: new Set(PARTS), out: path.join(root, "bench", "results", "datapath.json"), readme: path.join(root, "bench", "datapath", "README.md") };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    if (v === "--quick") a.quick = true;
    else if (v === "--only") {
      const list = (argv[++i] ?? "").split(",").filter(Boolean);
      for (const p of list) if (!PARTS.includes(p as Part)) throw new Error(`unknown part "${p}" (one of ${PARTS.join(", ")})`);
      a.only = new Set(list as Part[]);
    } else if (v === "--out") a.out = path.resolve(argv[++i] ?? "");
    else if (v === "--no-readme") a.readme = null;
    else throw new Error(`unknown argument "${v}"`);
  }
  if (a.quick || a.only.size !== PARTS.length) {
    // Partial or quick runs never overwrite the committed results unless --out says so.
    if (!argv.includes("--out")) a.out = path.join(root, "bench", "results", "datapath.partial.tmp");
    a.readme = null;
  }
  return a;
}


async function toolVersions(root: string): Promise<Record<string, string>> {
  const first = async (cmd: string, args: string[]) => (await sh(cmd, args, { allowFail: true })).stdout.split("\n")[0]?.trim() ?? "";
  const dirty = (await sh("git", ["-C", root, "status", "--porcelain", "--", "bpf", "daemon/src/datapath"], { allowFail: true })).stdout.trim() !== "";
  return {
    datapath_revision: `${await first("git", ["-C", root, "log", "-1", "--format=%h %s", "--", "bpf", "daemon/src/datapath"])}${dirty ? " (+ uncommitted changes)" : ""}`,
    clang: await first("clang", ["--version"]),
    bpftool: await first("bpftool", ["version"]),
    iperf3: await first("iperf3", ["--version"]),
    nft: await first("nft", ["--version"]),
    iptables: await first("iptables", ["--version"]),
  };
}

/** Re-evaluates the targets of an existing results file and re-renders the README section (no measuring). */
async function renderOnly(file: string, root: string): Promise<void> {
  const r = JSON.parse(await readFile(file, "utf8")) as DatapathResults;
  const updated: DatapathResults = { ...r, targets: evaluateTargets(r) };
  await writeFile(file, JSON.stringify(updated, null, 2) + "\n");
  const readme = path.join(root, "bench", "datapath", "README.md");
  await writeFile(readme, renderMarkdown(await readFile(readme, "utf8").catch(() => ""), updated));
}

async function main(): Promise<void> {
  const started = Date.now();
  const renderAt = process.argv.indexOf("--render");
  if (renderAt !== -1) {
    const root = projectRoot();
    await renderOnly(path.resolve(process.argv[renderAt + 1] ?? path.join(root, "bench", "results", "datapath.json")), root);
    return;
  }
  const machine = machineInfo();
  const root = projectRoot();
  const args = parseArgs(process.argv.slice(2), root);
  const log = (msg: string) => process.stderr.write(`[bench/datapath +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
  await requireKernel();
  const loaderPath = path.join(root, "bpf", "loader", "netfence-loader");
  if (!existsSync(loaderPath)) throw new Error(`${loaderPath} is missing: run \`make -C bpf loader\` first`);
  await sh("make", ["-s", "-C", path.join(root, "bench", "datapath")], { timeoutMs: 120_000 });
  const buildDir = path.join(root, "bench", "datapath", "build");

  const sb = await Sandbox.create("nfb");
  const pinRoot = `/sys/fs/bpf/nfbench-${randomBytes(4).toString("hex")}`;
  const tmpDir = await mkdtemp(path.join(os.tmpdir(), "nfbench-"));
  let filter: KernelFilter | null = null;
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    if (filter) {
      for (const id of await filter.listPinned().catch(() => [])) await filter.detach(id).catch(() => undefined);
      await filter.close().catch(() => undefined);
    }
    await sb.cleanup();
    await rm(pinRoot, { recursive: true, force: true }).catch(() => undefined);
    await rm(tmpDir, { recursive: true, force: true }).catch(() => undefined);
  };
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  try {
    await withTimeout("the datapath benchmark", GLOBAL_LIMIT_MS, (async () => {
      const net = await sb.network();
      log(`sandbox: workload ns ${net.workloadNs}, server ns ${net.serverNs}, host veth ${net.hostIf}, pins ${pinRoot}`);
      filter = await KernelFilter.start({ pinRoot, logger: pino({ level: "warn" }) });
      const f = filter;
      const out: { per_packet?: PerPacketResult; throughput?: ThroughputResult; inserts?: InsertResult } = {};
      let slot = 1;
      const attach = async (id: string, policy: FilterPolicy) => {
        await f.attach({ id, slot: slot++, target: { kind: "interface", name: net.hostIf, direction: "ingress" }, dns: { ipv4: null, ipv6: null, port: 0 } }, policy);
      };

      if (args.only.has("per-packet")) {
        out.per_packet = await perPacketBench({
          filter: f,
          attach,
          attachmentId: "bench-pp",
          pinRoot,
          progRun: path.join(buildDir, "prog-run"),
          buildDir,
          tmpDir,
          sizes: [10, 1000, 10_000, 100_000],
          repeat: args.quick ? 100_000 : 200_000,
          rounds: args.quick ? 3 : 7,
          log,
        });
      }
      if (args.only.has("inserts")) {
        const id = "bench-ins";
        out.inserts = await insertBench({ filter: f, attach, attachmentId: id, pinRoot, tmpDir, progRun: path.join(buildDir, "prog-run"), quick: args.quick, log });
        await f.detach(id);
      }
      if (args.only.has("throughput")) {
        out.throughput = await throughputBench({ sandbox: sb, net, filter: f, attachmentId: "bench-tput", slot: 999, tag: sb.tag, tmpDir, buildDir, quick: args.quick, log });
      }

      const results: DatapathResults = {
        benchmark: "datapath",
        machine,
        tools: await toolVersions(root),
        units: {
          _ns: "nanoseconds",
          _us: "microseconds",
          _ms: "milliseconds",
          _gbit_s: "gigabits per second (iperf3 receiver side)",
          _pct: "percent",
        },
        quick: args.quick,
        duration_s: Math.round((Date.now() - started) / 1000),
        loadavg1_end: Math.round(os.loadavg()[0]! * 100) / 100,
        ...out,
        targets: evaluateTargets(out),
      };
      await writeFile(args.out, JSON.stringify(results, null, 2) + "\n");
      log(`results written to ${args.out}`);
      if (args.readme) {
        const existing = await readFile(args.readme, "utf8").catch(() => "");
        await writeFile(args.readme, renderMarkdown(existing, results));
        log(`results section of ${args.readme} updated`);
      }
      for (const t of results.targets) log(`${t.met ? "MET   " : "MISSED"} ${t.name}: ${t.measured} (target ${t.target})${t.note ? ` — ${t.note}` : ""}`);
    })());
  } finally {
    await cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/datapath failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
