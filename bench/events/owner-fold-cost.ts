/**
 * bench/events/owner-fold-cost — what layout 7's per-owner throttle costs a cgroup program per
 * dropped packet. Layout 7 reads the socket owner (nf_owner_read: full socket, uid, socket storage)
 * BEFORE the per-CPU fold, so that two users are never folded together; layout 6 read it only for
 * the packets it reported. The regime where that differs: a flood of blocked datagrams from one
 * socket to one destination (all but one per second folded per CPU).
 *
 * Two cgroup attachments (allowlist, nothing allowed) side by side, one loaded by the loader of
 * b209e45 (layout 6, test/helpers/old-loader.ts), one by this tree's; a real UDP socket in each
 * cgroup (a python3 loop, pinned to CPU 0; the drops come back as EPERM) sends PACKETS identical datagrams per round;
 * the egress program's kernel run time per packet comes from the kernel's BPF statistics
 * (kernel.bpf_stats_enabled, switched on for the run and restored after; run_time_ns / run_cnt
 * deltas). Rounds alternate the two sides.
 *
 *   make -C bpf loader && npm run build
 *   flock /tmp/netfence-bench.lock node dist/bench/events/owner-fold-cost.js [--rounds N] [--out FILE]
 */
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { requireKernel, Sandbox, type SandboxNetwork } from "../../test/helpers/sandbox.js";
import { oldLoader } from "../../test/helpers/old-loader.js";
import { loadAverage, machineRecord, writeJsonFile } from "../lib/run-record.js";
import { median, percentile, round } from "../lib/stats.js";

const run = promisify(execFile);
const LAYOUT6_COMMIT = "b209e459a2209985c3a7c68e24a2a436f01faa21";
const PACKETS = 50_000;
const PORT = 7551;
const STATS = "/proc/sys/kernel/bpf_stats_enabled";
/** COUNT identical datagrams from one socket; the cgroup program's drop comes back as EPERM (counted as sent). */
const SENDER = `
import json, socket, sys
dst, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = 0
while sent < count:
    try:
        s.sendto(b"netfence-bench", (dst, port))
    except PermissionError:
        pass
    sent += 1
print(json.dumps({"sent": sent}))
`;
const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const ROUNDS = Number(arg("--rounds") ?? 12);
const OUT = arg("--out") ?? path.join(projectRoot(), "bench", "results", "events-owner-fold.json");

interface Side {
  readonly name: string;
  readonly sb: Sandbox;
  readonly net: SandboxNetwork;
  readonly filter: KernelFilter;
  readonly cg: string;
  readonly prog: string;
  readonly ns: number[];
}

async function side(name: string, prefix: string, loaderPath?: string): Promise<Side> {
  const sb = await Sandbox.create(prefix);
  const net = await sb.network();
  const pinRoot = await sb.pinRoot();
  const cg = await sb.cgroup();
  const filter = await KernelFilter.start({ pinRoot, ...(loaderPath === undefined ? {} : { loaderPath }) });
  const id = `bench-${prefix}`;
  await filter.attach({ id, slot: 9, target: { kind: "cgroup", path: cg }, dns: { ipv4: null, ipv6: null, port: 0 } }, { mode: "allowlist", audit: false, entries: [] });
  return { name, sb, net, filter, cg, prog: path.join(pinRoot, id, "prog"), ns: [] };
}

async function progStats(pin: string): Promise<{ runs: number; ns: number }> {
  const r = await run("bpftool", ["-j", "prog", "show", "pinned", pin]);
  const p = JSON.parse(r.stdout) as { run_cnt?: number; run_time_ns?: number };
  return { runs: p.run_cnt ?? 0, ns: p.run_time_ns ?? 0 };
}

async function round1(s: Side): Promise<number> {
  const before = await progStats(s.prog);
  const dst = s.net.serverIp4[1]!;
  const r = await s.sb.exec(s.net.workloadNs, ["taskset", "-c", "0", "python3", "-c", SENDER, dst, String(PORT), String(PACKETS)], { cgroup: s.cg, timeoutMs: 30_000 });
  const sent = (JSON.parse(r.stdout.trim()) as { sent: number }).sent;
  const after = await progStats(s.prog);
  const runs = after.runs - before.runs;
  if (runs < sent) throw new Error(`${s.name}: ${runs} program runs for ${sent} datagrams`);
  return (after.ns - before.ns) / runs;
}

async function main(): Promise<void> {
  await requireKernel();
  const load0 = loadAverage();
  const statsBefore = (await readFile(STATS, "utf8")).trim();
  const sides: Side[] = [];
  const restore = async () => {
    await writeFile(STATS, statsBefore).catch(() => undefined);
    for (const s of sides) {
      await s.filter.close().catch(() => undefined);
      await s.sb.cleanup().catch(() => undefined);
    }
  };
  process.on("SIGINT", () => void restore().then(() => process.exit(130)));
  process.on("SIGTERM", () => void restore().then(() => process.exit(143)));
  try {
    sides.push(await side("layout 6 (b209e45)", "bof6", await oldLoader(LAYOUT6_COMMIT)));
    sides.push(await side("layout 7 (this tree)", "bof7"));
    await writeFile(STATS, "1");
    for (const s of sides) await round1(s); // warm-up, not recorded
    for (let i = 0; i < ROUNDS; i++) for (const s of i % 2 === 0 ? sides : [...sides].reverse()) s.ns.push(await round1(s));
    const summary = sides.map((s) => ({ side: s.name, p50_ns: round(median(s.ns), 1), p99_ns: round(percentile(s.ns, 99), 1), rounds_ns: s.ns.map((v) => round(v, 1)) }));
    const result = {
      what: "cgroup_skb egress program, kernel run time per packet (bpf_stats run_time_ns/run_cnt, per round), a flood of identical blocked UDP datagrams from one socket on CPU 0 (the per-CPU fold path)",
      packets_per_round: PACKETS,
      rounds: ROUNDS,
      note: "p50/p99 are over the per-round means; the stats themselves add the same fixed cost to both sides",
      results: summary,
      machine: await machineRecord(load0, "shared 2-core VM; other sessions' tests may run"),
    };
    await writeJsonFile(OUT, result);
    for (const s of summary) console.log(`${s.side}: p50 ${s.p50_ns} ns, p99 ${s.p99_ns} ns per packet`);
    console.log(`wrote ${OUT}`);
  } finally {
    await restore();
  }
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
