/**
 * bench/events — the kernel → daemon event path (issue 14), in one run:
 *
 * 1. Per-packet cost of the event path on blocked packets: the real netfence_tc program against
 *    the same program built without its event path (-DNF_NO_EVENTS), BPF_PROG_TEST_RUN on crafted
 *    blocked UDP frames, interleaved round by round, in four regimes: one flow repeated in the
 *    kernel (repeat 200k: the per-CPU fold), one flow / two alternating flows / a new flow per
 *    packet, one run per syscall (the fold, the throttle map hit, a new event on the ring buffer).
 * 2. Events per second from the kernel to the daemon's KernelFilter without loss, throttling on:
 *    every packet a distinct flow (identical packets would fold into one event), paced at several
 *    rates and unpaced; counts what arrived, what the kernel could not queue (NF_CNT_EVENTS_LOST)
 *    and the delivery latency (kernel timestamp → KernelFilter.events()).
 *
 *   make -C bpf loader && npm run build && make -C bench/events
 *   flock /tmp/netfence-bench.lock node dist/bench/events/run.js [--quick] [--out FILE]
 *
 * Sandbox: two throwaway sandboxes (veths and pin roots of test/helpers/sandbox.ts), removed at
 * the end, on failure and on SIGINT/SIGTERM; the generated packets never leave BPF_PROG_TEST_RUN.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { requireKernel, Sandbox, type SandboxNetwork } from "../../test/helpers/sandbox.js";
import { loadAverage, machineRecord, writeJsonFile } from "../lib/run-record.js";
import { median, percentile, round } from "../lib/stats.js";
import { withTimeout } from "../lib/time-limit.js";
import { dstBase, eventGen, NO_EVENTS_BPF_DIR } from "./event-gen.js";

const TARGET_EVENTS_PER_S = 200_000;
const quick = process.argv.includes("--quick");
const outIdx = process.argv.indexOf("--out");
const OUT = outIdx > 0 ? process.argv[outIdx + 1]! : path.join(projectRoot(), "bench", "results", quick ? "events.partial.tmp" : "events.json");

interface Side {
  readonly sb: Sandbox;
  readonly net: SandboxNetwork;
  readonly filter: KernelFilter;
  readonly id: string;
  readonly prog: string;
}

async function side(prefix: string, id: string, bpfDir?: string): Promise<Side> {
  const sb = await Sandbox.create(prefix);
  const net = await sb.network();
  const pinRoot = await sb.pinRoot();
  const filter = await KernelFilter.start({ pinRoot, ...(bpfDir === undefined ? {} : { bpfDir }) });
  await filter.attach({ id, slot: 7, target: { kind: "interface", name: net.hostIf, direction: "ingress" }, dns: { ipv4: null, ipv6: null, port: 0 } }, { mode: "block-all", audit: false, entries: [] });
  return { sb, net, filter, id, prog: path.join(pinRoot, id, "prog") };
}

/** Counts the events of one attachment as KernelFilter delivers them, with their latency. */
class Consumer {
  received = 0;
  lastAt = 0;
  private latencies: number[] = [];
  private readonly it: AsyncIterator<{ attachmentId: string | null; timeMs: number }>;
  private running = true;

  constructor(filter: KernelFilter, private readonly id: string) {
    this.it = filter.events()[Symbol.asyncIterator]();
    void this.loop();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const n = await this.it.next();
      if (n.done) return;
      if (n.value.attachmentId !== this.id) continue;
      const now = Date.now();
      this.received++;
      this.lastAt = now;
      if (this.latencies.length < 2_000_000) this.latencies.push(now - n.value.timeMs);
    }
  }

  /** Starts a measurement window; returns its latency samples when taken. */
  reset(): void {
    this.received = 0;
    this.latencies = [];
  }

  latencyMs(): { p50: number; p99: number } | null {
    return this.latencies.length === 0 ? null : { p50: percentile(this.latencies, 50), p99: percentile(this.latencies, 99) };
  }

  /** Resolves once `expected` arrived or nothing new came for `quietMs` (bounded by `maxMs`). */
  async settle(expected: number, quietMs = 500, maxMs = 15_000): Promise<void> {
    const start = Date.now();
    let last = this.received;
    let lastChange = Date.now();
    while (this.received < expected && Date.now() - start < maxMs) {
      await new Promise((r) => setTimeout(r, 50));
      if (this.received !== last) {
        last = this.received;
        lastChange = Date.now();
      } else if (Date.now() - lastChange > quietMs) return;
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.it.return?.();
  }
}

const REGIMES = [
  { name: "one flow, repeated in the kernel (repeat 200k: the per-CPU fold)", key: "fold-repeat", calls: 5, repeat: 200_000, flows: 1 },
  { name: "one flow, one run per syscall (the per-CPU fold)", key: "fold", calls: 100_000, repeat: 1, flows: 1 },
  { name: "two alternating flows (a throttle-map hit each)", key: "throttle-hit", calls: 100_000, repeat: 1, flows: 2 },
  { name: "a new flow per packet (a new event on the ring buffer)", key: "new-event", calls: 100_000, repeat: 1, flows: 100_000 },
] as const;

async function costBench(ev: Side, no: Side, consumer: Consumer, rounds: number, nextBase: () => string) {
  const samples = new Map<string, { events: number[]; noEvents: number[] }>();
  for (const r of REGIMES) samples.set(r.key, { events: [], noEvents: [] });
  for (let round = 0; round < rounds; round++) {
    for (const r of REGIMES) {
      const order = round % 2 === 0 ? [ev, no] : [no, ev];
      for (const s of order) {
        const calls = quick ? Math.min(r.calls, 20_000) : r.calls;
        const flows = r.flows === 100_000 ? calls : r.flows;
        const g = await eventGen({ prog: s.prog, calls, repeat: r.repeat, flows, rate: 0, src: s.net.workloadIp4, dstBase: nextBase() });
        if (g.pass !== 0) throw new Error(`${s.id}: ${g.pass} packets were not dropped (block-all expected)`);
        samples.get(r.key)![s === ev ? "events" : "noEvents"].push(g.progNs / g.runs);
      }
      await consumer.settle(Number.MAX_SAFE_INTEGER, 200, 3000); // drain before the next measurement
    }
  }
  return REGIMES.map((r) => {
    const s = samples.get(r.key)!;
    const diffs = s.events.map((v, i) => v - s.noEvents[i]!);
    return {
      regime: r.key, what: r.name, rounds,
      ns_per_packet: { events: stat(s.events), no_events: stat(s.noEvents) },
      event_path_ns: { p50: round(median(diffs)), p99: round(percentile(diffs, 99)) },
    };
  });
}

const stat = (xs: number[]) => ({ p50: round(median(xs)), p99: round(percentile(xs, 99)), min: round(Math.min(...xs)) });

async function throughputBench(ev: Side, consumer: Consumer, nextBase: () => string) {
  const seconds = quick ? 1 : 3;
  // rate 0 = unpaced; generators 2 = one driver per CPU (one driver alone tops out near 170k/s:
  // each new event costs it ~1.6 µs in the kernel plus the syscall).
  const runs = quick ? [{ rate: 200_000, generators: 1 }, { rate: 0, generators: 2 }]
    : [{ rate: 100_000, generators: 1 }, { rate: 200_000, generators: 1 }, { rate: 0, generators: 1 }, { rate: 200_000, generators: 2 }, { rate: 300_000, generators: 2 }, { rate: 0, generators: 2 }];
  const out = [];
  for (const { rate, generators } of runs) {
    const calls = (rate === 0 ? (quick ? 300_000 : 1_000_000) : rate * seconds) / generators;
    const lostBefore = (await ev.filter.counters([ev.id])).get(ev.id)!.eventsLost;
    consumer.reset();
    const t0 = Date.now();
    const gens = await Promise.all(Array.from({ length: generators }, (_, cpu) =>
      eventGen({ prog: ev.prog, calls, repeat: 1, flows: calls, rate: rate / generators, src: ev.net.workloadIp4, dstBase: nextBase(), ...(generators > 1 ? { cpu } : {}) })));
    const g = { calls: gens.reduce((s, x) => s + x.calls, 0), wallNs: Math.max(...gens.map((x) => x.wallNs)) };
    await consumer.settle(g.calls);
    const lost = (await ev.filter.counters([ev.id])).get(ev.id)!.eventsLost - lostBefore;
    const deliveredS = Math.max(consumer.lastAt - t0, 1) / 1000;
    out.push({
      target_rate_per_s: rate === 0 ? "unpaced" : rate,
      generators,
      sent: g.calls,
      generated_per_s: Math.round(g.calls / (g.wallNs / 1e9)),
      received: consumer.received,
      delivered_per_s: Math.round(consumer.received / deliveredS),
      kernel_events_lost: Number(lost),
      missing: g.calls - consumer.received,
      // not lost in the kernel yet missing: dropped by the daemon's bounded per-subscriber backlog (EventFanout)
      dropped_in_daemon: Math.max(0, g.calls - consumer.received - Number(lost)),
      lossless: consumer.received === g.calls && lost === 0n,
      latency_ms: consumer.latencyMs(),
    });
    process.stderr.write(`events: ${JSON.stringify(out.at(-1))}\n`);
  }
  return out;
}

async function main(): Promise<void> {
  await requireKernel();
  await new Promise<void>((resolve, reject) =>
    execFile("make", ["-C", path.join(projectRoot(), "bench", "events")], (err, _o, stderr) => (err ? reject(new Error(stderr)) : resolve())),
  );
  const loadAtStart = loadAverage();
  const sides: Side[] = [];
  const cleanup = async (): Promise<void> => {
    for (const s of sides) {
      await s.filter.detach(s.id).catch(() => undefined);
      await s.filter.close().catch(() => undefined);
      await s.sb.cleanup();
    }
  };
  const onSignal = (): void => void cleanup().finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    await withTimeout("bench/events", 8 * 60_000, (async () => {
      const ev = await side("evbe", "bench-events");
      sides.push(ev);
      const no = await side("evbn", "bench-noevents", NO_EVENTS_BPF_DIR);
      sides.push(no);
      const consumer = new Consumer(ev.filter, ev.id);
      let n = 0;
      const nextBase = (): string => dstBase(n++);
      const cost = await costBench(ev, no, consumer, quick ? 2 : 7, nextBase);
      const throughput = await throughputBench(ev, consumer, nextBase);
      await consumer.stop();
      // A run counts at the rate its drivers really generated (a paced run may fall short of its target).
      const lossless = throughput.filter((t) => t.lossless).map((t) => t.generated_per_s);
      const best = lossless.length === 0 ? 0 : Math.max(...lossless);
      const unpaced = throughput.filter((t) => t.target_rate_per_s === "unpaced").at(-1);
      const record = {
        benchmark: "bench/events",
        quick,
        machine: await machineRecord(loadAtStart, "2 vCPUs shared with five other engineers' lanes (tests, builds, benchmarks)"),
        per_packet_cost: cost,
        throughput,
        targets: {
          events_per_s_lossless: {
            target: TARGET_EVENTS_PER_S,
            highest_generated_rate_without_loss: best,
            unpaced_delivered_per_s: unpaced?.delivered_per_s ?? null,
            unpaced_lossless: unpaced?.lossless ?? null,
            met: best >= TARGET_EVENTS_PER_S,
          },
        },
      };
      await writeJsonFile(OUT, record);
      process.stdout.write(`${JSON.stringify({ out: OUT, per_packet_cost: cost.map((c) => [c.regime, c.ns_per_packet, c.event_path_ns]), targets: record.targets }, null, 1)}\n`);
    })());
  } finally {
    await cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/events: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
