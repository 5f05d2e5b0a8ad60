/**
 * Issue 15: host micro-segmentation, Netfence side by side with the seed's own approach (seeds/004):
 * iptables `-m owner --uid-owner` rules (iptables-restore, atomic; and the seed's apply.sh, one
 * `iptables -A` per rule after a flush) and nftables `meta skuid` (one rule per line, and
 * concatenated sets), against a Netfence cgroup attachment. Usage (root, after
 * `bash scripts/bootstrap.sh`; one benchmark at a time on the machine):
 *
 *   flock /tmp/netfence-bench.lock node dist/bench/segmentation/run.js [--sizes 100,10000]
 *     [--apply-runs 15] [--rounds 7] [--count 2000] [--applies 20] [--interval-us 500]
 *     [--append-limit-s 150] [--scoped] [--out FILE]
 *
 * Everything runs in a throwaway network namespace (netns-runner: its own lo, its own firewall;
 * the root namespace's firewall is never touched) with a private bpffs and two cgroups of ours:
 * `plain` (the baselines' clients) and `nf` (Netfence's cgroup attachment). The traffic is
 * segclient.c: server end as root outside the cgroups, client end as the test user `daemon`
 * (uid 1) inside them, round trips on 127.0.0.1. Writes bench/results/segmentation[-scoped].json.
 * Never asserts anything about time.
 */
import { existsSync, rmdirSync } from "node:fs";
import { mkdir, rmdir } from "node:fs/promises";
import path from "node:path";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { cgroup2InNetns } from "../lib/cgroup-mount.js";
import { clamped, walkArgs } from "../lib/bench-args.js";
import { invocation, mountPrivateBpffs, requireWorkdir, runInNetns } from "../lib/netns-runner.js";
import { run } from "../lib/run-command.js";
import { loadAverage, machineRecord, writeJsonFile } from "../lib/run-record.js";
import { withTimeout } from "../lib/time-limit.js";
import { baselineEngines, baselineVersions, clearBaselines } from "./engines.js";
import { startNetfence, type NetfenceEngine } from "./netfence-engine.js";
import { applyPhase, dropPhase, enforcementCheck, packetPhase, type Placed } from "./phases.js";
import { DENIES } from "./rulesets.js";
import { segclientPath, type Client } from "./traffic.js";

interface Args {
  sizes: number[];
  applyRuns: number;
  rounds: number;
  count: number;
  applies: number;
  intervalUs: number;
  appendLimitS: number;
  scoped: boolean;
  out: string | null;
}

const LIMIT_MS = 25 * 60_000;
const BENCH_PORT = 7400;
/** The test user: `daemon` (uid 1, gid 1), an existing system user (no user is created). */
const TEST_USER = { uid: 1, gid: 1 };
/** A user with no rule of its own: `nobody` (uid and gid 65534). */
const OTHER_UID = 65534;

function parseArgs(argv: readonly string[]): Args {
  const a: Args = { sizes: [100, 10_000], applyRuns: 15, rounds: 7, count: 2000, applies: 20, intervalUs: 500, appendLimitS: 150, scoped: false, out: null };
  walkArgs(argv, (flag, value) => {
    if (flag === "--sizes") a.sizes = value().split(",").map((s) => clamped(s, DENIES + 2, 50_000));
    else if (flag === "--apply-runs") a.applyRuns = clamped(value(), 1, 200);
    else if (flag === "--rounds") a.rounds = clamped(value(), 1, 50);
    else if (flag === "--count") a.count = clamped(value(), 100, 100_000);
    else if (flag === "--applies") a.applies = clamped(value(), 1, 200);
    else if (flag === "--interval-us") a.intervalUs = clamped(value(), 50, 100_000);
    else if (flag === "--append-limit-s") a.appendLimitS = clamped(value(), 1, 900);
    else if (flag === "--out") a.out = path.resolve(value());
    else if (flag === "--scoped") {
      a.scoped = true;
      return true;
    } else return false;
    return true;
  });
  if (a.sizes.some((n) => !Number.isInteger(n))) throw new Error("--sizes takes integers, e.g. 100,10000");
  return a;
}

async function inner(args: Args, workdir: string): Promise<void> {
  const started = Date.now();
  const log = (m: string) => process.stderr.write(`[segmentation +${((Date.now() - started) / 1000).toFixed(1)}s] ${m}\n`);
  await mountPrivateBpffs();
  const loadAtStart = loadAverage();
  const root = projectRoot();
  if (!existsSync(segclientPath())) throw new Error("segclient is not built (make -C bench/segmentation)");
  const cg = await cgroup2InNetns(workdir);
  const cgPlain = path.join(cg.root, `nfseg-${process.pid}-plain`);
  const cgNf = path.join(cg.root, `nfseg-${process.pid}-nf`);
  let nf: NetfenceEngine | null = null;
  // Should the global time limit end the process first: our (then empty) cgroups still go.
  process.once("exit", () => {
    for (const d of [cgPlain, cgNf]) {
      try {
        rmdirSync(d);
      } catch {
        // already removed, or never created
      }
    }
  });
  try {
    for (const d of [cgPlain, cgNf]) await mkdir(d);
    const out = args.out ?? path.join(root, "bench", "results", args.scoped ? "segmentation-scoped.json" : "segmentation.json");
    const client: Client = { port: BENCH_PORT, ...TEST_USER };
    nf = await startNetfence({ pinRoot: `/sys/fs/bpf/nfseg-${process.pid}`, cgroup: cgNf, scoped: args.scoped, benchUid: TEST_USER.uid, benchPort: BENCH_PORT, initialRules: Math.min(...args.sizes) });
    const engines: Placed[] = [
      ...baselineEngines({ workdir, benchUid: TEST_USER.uid, benchPort: BENCH_PORT, appendLimitMs: args.appendLimitS * 1000 }).map((engine) =>
        engine.name === "iptables-append" ? { engine, cgroup: cgPlain, fewRunsAbove: 100 } : { engine, cgroup: cgPlain },
      ),
      { engine: nf, cgroup: cgNf },
    ];
    await clearBaselines();
    log(`engines: ${engines.map((p) => p.engine.name).join(", ")}; netfence layout ${nf.layout}, policy ${nf.policyKind}; load ${loadAtStart.join(" ")}`);

    const enforcement = await enforcementCheck(engines.filter((p) => p.engine.name !== "iptables-append"), Math.min(...args.sizes), client, OTHER_UID, log);
    const apply_ms = await applyPhase(engines, args.sizes, args.applyRuns, log, args.appendLimitS * 1000);
    // The per-packet and drop phases leave the seed's rule-by-rule loop out above 100 rules (minutes per apply).
    const noSlowAppend = engines.map((p) => (p.engine.name === "iptables-append" ? { ...p, maxRules: 100 } : p));
    const per_packet = await packetPhase(engines.filter((p) => p.engine.name !== "iptables-append"), args.sizes, args.rounds, args.count, client, log);
    const drops = await dropPhase(noSlowAppend.filter((p) => p.engine.name !== "no-filter"), args.sizes, args.applies, args.intervalUs, client, log);

    await writeJsonFile(out, {
      benchmark: "segmentation (issue 15): iptables -m owner / nft meta skuid vs a Netfence cgroup attachment",
      command: `flock /tmp/netfence-bench.lock node dist/bench/segmentation/run.js --sizes ${args.sizes.join(",")} --apply-runs ${args.applyRuns} --rounds ${args.rounds} --count ${args.count} --applies ${args.applies} --interval-us ${args.intervalUs}${args.scoped ? " --scoped" : ""}`,
      machine: await machineRecord(loadAtStart, "2 vCPUs shared with other engineers' kernel tests; runs serialised by flock /tmp/netfence-bench.lock", {
        ...(await baselineVersions()),
        netfence_layout: String(nf.layout),
        revision: (await run("git", ["-C", root, "log", "-1", "--format=%h %s"], true)).trim(),
      }),
      units: {
        apply_ms: "wall ms of one apply replacing an N-rule policy of the same size: a process per apply for the baselines (spawn to exit), KernelFilter.replacePolicy for Netfence (in the running daemon's process)",
        rtt_us: "µs per round trip on 127.0.0.1 (segclient: both ends in one process, so wall ≈ CPU); p50 = median over rounds of each round's p50, p99 likewise of each round's p99",
        added: "engine minus the same round's no-filter figure",
        cpu_us_per_op: "getrusage user+sys of the process per round trip (the loopback receive path runs in the sender's context)",
        drops: "round trips lost (no answer within 100 ms) while `applies` applies run back to back; persistent = one UDP socket (an established flow), fresh = a new socket per round trip (a new flow)",
      },
      policy: {
        shape: `${DENIES} denies (uid 65534 → 127.0.0.1 tcp 6379+i), N-${DENIES + 2} allows (uid 10000+i%1000 → 127.0.0.1 tcp 10000+i), then the bench's own allows (uid ${TEST_USER.uid} → 127.0.0.1 udp/tcp ${BENCH_PORT}) LAST; default drop; established accepted first (iptables/nft)`,
        netfence: nf.policyKind === "scoped"
          ? "the same policy: every rule an owner/port-scoped rule on 127.0.0.1/32 (FilterEntry.scoped, layout 6)"
          : "NOT the same policy: main's kernel (layout 5) has no owner or port in an entry; the same NUMBER of rules as unscoped /32 entries (127.0.0.1/32 allowed for every user in the cgroup, the rest other loopback /32s), allowlist mode",
        test_user: "daemon (uid 1, gid 1), no supplementary groups",
      },
      enforcement_check: { rules: Math.min(...args.sizes), other_uid: OTHER_UID, engines: enforcement },
      apply_ms,
      per_packet,
      drops,
      duration_s: Math.round((Date.now() - started) / 1000),
    });
    log(`written ${out}; load ${loadAverage().join(" ")}`);
  } finally {
    await nf?.close();
    await clearBaselines().catch(() => undefined);
    for (const d of [cgPlain, cgNf]) await rmdir(d).catch(() => undefined);
    await cg.release();
  }
}

const inv = invocation(process.argv.slice(2));
const args = parseArgs(inv.options);
if (inv.inner) await withTimeout("the segmentation benchmark", LIMIT_MS, inner(args, requireWorkdir(inv)));
else {
  await run("make", ["-s", "-C", path.join(projectRoot(), "bench", "segmentation")]);
  await runInNetns({ script: import.meta.url, prefix: "nfseg", rootError: "the benchmark needs root (network namespace, cgroups, eBPF)", veths: [], workdirPrefix: "nf-seg-" }, inv.options);
}
