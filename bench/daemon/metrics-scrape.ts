/**
 * Issue 14: what a Prometheus scrape of /metrics costs with many attachments. Usage (root, after
 * `npm run build`): `flock /tmp/netfence-bench.lock node dist/bench/daemon/metrics-scrape.js
 * [--attachments 500] [--cidrs 100] [--scrapes 20] [--out FILE]`.
 *
 * Inside a throwaway network namespace (private bpffs): the real `netfenced start` with a data_dir,
 * no control plane, a default policy of N CIDRs and metrics on 127.0.0.1. N cgroups of ours are
 * attached through the DaemonService; then /metrics is scraped: the first scrape reads the map
 * usage from the loader (one TABLES request per attachment, which walks its maps), the following
 * ones within 5 s get it from the cache; every scrape reads the kernel counters of every
 * attachment once. Reported: the scrape times (cold = map usage read, warm = cached), the map
 * read as the daemon measured it (netfence_map_usage_read_seconds), the body size and series.
 */
import path from "node:path";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { DaemonClient } from "../../cli/src/daemon-client.js";
import { BenchDaemon } from "./daemon-process.js";
import { CgroupTargets } from "./bench-targets.js";
import { tearDownCgroupBench } from "./cleanup.js";
import { cgroup2InNetns } from "../lib/cgroup-mount.js";
import { clamped, walkArgs } from "../lib/bench-args.js";
import { loadAverage, machineRecord, writeJsonFile } from "../lib/run-record.js";
import { percentile, round } from "../lib/stats.js";
import { invocation, mountPrivateBpffs, requireWorkdir, runInNetns } from "../lib/netns-runner.js";

interface Args { attachments: number; cidrs: number; scrapes: number; out: string }

function parseArgs(argv: string[]): Args {
  const args: Args = { attachments: 500, cidrs: 100, scrapes: 20, out: path.join(projectRoot(), "bench", "results", "daemon-metrics-scrape.json") };
  walkArgs(argv, (a, value) => {
    if (a === "--attachments") args.attachments = clamped(value(), 1, 2000);
    else if (a === "--cidrs") args.cidrs = clamped(value(), 1, 5000);
    else if (a === "--scrapes") args.scrapes = clamped(value(), 2, 1000);
    else if (a === "--out") args.out = path.resolve(value());
    else return false;
    return true;
  });
  return args;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const METRICS = "127.0.0.1:29999";

async function scrape(): Promise<{ ms: number; bytes: number; text: string }> {
  const t0 = performance.now();
  const res = await fetch(`http://${METRICS}/metrics`);
  const text = await res.text();
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return { ms: performance.now() - t0, bytes: Buffer.byteLength(text), text };
}

async function inner(args: Args, workdir: string): Promise<void> {
  await mountPrivateBpffs();
  const loadAtStart = loadAverage();
  const cg = await cgroup2InNetns(workdir);
  const targets = new CgroupTargets(cg.root, `scrape-${process.pid}`);
  const cidrs = Array.from({ length: args.cidrs }, (_, i) => `"10.${(i >> 8) & 255}.${i & 255}.0/24"`);
  const daemon = new BenchDaemon({
    cli: path.join(projectRoot(), "cli/dist/index.js"),
    dir: workdir,
    pinRoot: `/sys/fs/bpf/netfence-scrape-${process.pid}`,
    portMin: 20_000,
    portMax: 20_000 + args.attachments + 10,
    logLevel: "warn",
    defaultPolicyYaml: `default_policy: { mode: allowlist, allow_cidrs: [${cidrs.join(", ")}] }`,
    extraYaml: `metrics: { listen: "${METRICS}" }`,
  });
  const ids: string[] = [];
  try {
    const dirs = await targets.create(args.attachments);
    daemon.spawn();
    await daemon.waitReady(120_000);
    const client = new DaemonClient(daemon.socket);
    try {
      for (const dir of dirs) ids.push((await client.attach({ target: { case: "cgroupPath", value: dir }, metadata: {} })).id);
    } finally {
      client.close();
    }
    console.log(`attached ${ids.length} cgroups with ${args.cidrs} CIDRs each · load ${loadAverage()[0]}`);
    await sleep(6000); // past any cache
    const cold: number[] = [];
    const warm: number[] = [];
    const mapRead: number[] = [];
    let last = { ms: 0, bytes: 0, text: "" };
    for (let i = 0; i < args.scrapes; i++) {
      // Every 4th scrape after the cache expired (cold: reads the map usage), the rest 0.5 s apart (warm).
      if (i % 4 === 0) await sleep(5200);
      else await sleep(500);
      last = await scrape();
      (i % 4 === 0 ? cold : warm).push(last.ms);
      const m = /^netfence_map_usage_read_seconds (\S+)$/m.exec(last.text);
      if (i % 4 === 0 && m) mapRead.push(Number(m[1]) * 1000);
    }
    const series = last.text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).length;
    const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
    const results = {
      attachments: ids.length,
      cidrs_per_attachment: args.cidrs,
      cold_scrape_ms: { p50: round(percentile(sorted(cold), 50), 1), max: round(Math.max(...cold), 1), n: cold.length },
      warm_scrape_ms: { p50: round(percentile(sorted(warm), 50), 1), max: round(Math.max(...warm), 1), n: warm.length },
      map_usage_read_ms: { p50: round(percentile(sorted(mapRead), 50), 1), max: round(Math.max(...mapRead), 1) },
      body_bytes: last.bytes,
      series,
    };
    console.log(JSON.stringify(results));
    await writeJsonFile(args.out, {
      benchmark: "daemon-metrics-scrape",
      finished_at: new Date().toISOString(),
      command: `node dist/bench/daemon/metrics-scrape.js --attachments ${args.attachments} --cidrs ${args.cidrs} --scrapes ${args.scrapes}`,
      machine: await machineRecord(loadAtStart, "a shared 2-vCPU VM; the daemon, its loader and this scraper share its cores"),
      results,
    });
    console.log(`wrote ${args.out} · load ${loadAverage()[0]}`);
  } finally {
    await tearDownCgroupBench(daemon, ids, targets, cg);
  }
}

const inv = invocation(process.argv.slice(2));
const args = parseArgs(inv.options);
if (inv.inner) await inner(args, requireWorkdir(inv));
else await runInNetns({ script: import.meta.url, prefix: "nfscrape", rootError: "the benchmark needs root (network namespace, cgroups, eBPF)", veths: [], workdirPrefix: "nf-scrape-" }, inv.options);
