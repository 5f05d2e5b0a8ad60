/**
 * DNS wire codec on the production path: the hand-written decoders (daemon/src/dns/dns-wire.ts)
 * against the dns-packet library, each inside a real `netfenced start` daemon (attachment manager,
 * KernelFilter and loader child, one allowlist DNS server whose allowed answers go into the
 * attachment's pinned kernel map before the reply leaves). The two daemons differ only in the
 * environment variable NETFENCE_BENCH_DNS_CODEC (daemon/src/dns/dns-codec.ts), so the same
 * query path runs on one decoder or the other. Usage (root, after `npm run build`):
 * `node dist/bench/dns/codec-bench.js [--rounds 5] [--seconds 8] [--latency-seconds 4] [--out FILE]`.
 *
 * Like dns-bench.ts it runs inside a throwaway network namespace `nfcodec<pid>` (own lo, two
 * veth pairs for the filters, a private bpffs) that the outer process always deletes afterwards.
 * Rounds alternate the order of the two daemons (A B, B A, …) so a slow spell of the shared
 * machine does not favour one; the daemons' own CPU time per query (from /proc) is reported
 * beside queries/s because it is the figure least disturbed by other load.
 */
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { DNS_CODEC_ENV } from "../../daemon/src/dns/dns-codec.js";
import * as wireCodec from "../../daemon/src/dns/dns-wire.js";
import * as packetCodec from "../../daemon/src/dns/dns-wire-packet.js";
import dgram from "node:dgram";
import dnsPacket from "dns-packet";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { BenchDaemon, procCpuMs } from "../daemon/daemon-process.js";
import { NETFENCED } from "../lib/binaries.js";
import { attachInterface, BENCH_TEST_ALLOWLIST_YAML, benchDnsYaml, detachAndStop } from "../lib/attached-daemon.js";
import { takeDnsperfSchedule, walkArgs } from "../lib/bench-args.js";
import { DnsNameFiles } from "../lib/dns-names.js";
import { loadAverage, machineRecord, writeJsonFile } from "../lib/run-record.js";
import { invocation, mountPrivateBpffs, requireWorkdir, runInNetns } from "../lib/netns-runner.js";
import { Dnsmasq } from "./bench-processes.js";
import { median } from "./decision-bench.js";
import { latencyPercentiles, round } from "./run-summary.js";
import { runDnsperf, type DnsperfResult } from "./dnsperf.js";

const CODECS = ["dns-wire", "dns-packet"] as const;
type Codec = (typeof CODECS)[number];
const PORTS: Record<Codec | "upstream", number> = { upstream: 15401, "dns-wire": 15402, "dns-packet": 15403 };
const IFACES: Record<Codec, string> = { "dns-wire": "nfch0", "dns-packet": "nfch1" };
const COLD_NAMES = 20_000;

interface Args { rounds: number; seconds: number; latencySeconds: number; out: string }

function parseArgs(argv: string[]): Args {
  const args: Args = { rounds: 5, seconds: 8, latencySeconds: 4, out: path.join(projectRoot(), "bench", "results", "dns-codec.json") };
  walkArgs(argv, (a, value) => {
    if (a === "--out") args.out = path.resolve(value());
    else return takeDnsperfSchedule(args, a, value);
    return true;
  });
  return args;
}

async function startDaemon(dir: string, codec: Codec): Promise<{ daemon: BenchDaemon; id: string }> {
  const port = PORTS[codec];
  const daemon = new BenchDaemon({
    cli: NETFENCED,
    dir: await mkdtemp(path.join(dir, `${codec}-`)),
    pinRoot: `/sys/fs/bpf/netfence-codecbench-${codec}-${process.pid}`,
    portMin: port,
    portMax: port,
    logLevel: "warn",
    dnsYaml: benchDnsYaml(port, PORTS.upstream),
    defaultPolicyYaml: BENCH_TEST_ALLOWLIST_YAML,
    env: { [DNS_CODEC_ENV]: codec },
  });
  daemon.spawn();
  await daemon.waitReady(120_000);
  const res = await attachInterface(daemon, IFACES[codec]);
  if (!res.dnsAddress.endsWith(`:${port}`)) throw new Error(`${codec}: DNS server on ${res.dnsAddress}, expected port ${port}`);
  return { daemon, id: res.id };
}

interface Sample { qps: number; completed: number; lost: number; cpuUsPerQuery: number; rcodes: Record<string, number> }

/** One dnsperf run against a daemon, with the daemon's CPU time (its Node process) per completed query. */
async function measure(d: BenchDaemon, run: () => Promise<DnsperfResult>): Promise<{ sample: Sample; result: DnsperfResult }> {
  const pid = d.pid!;
  const cpu0 = procCpuMs(pid);
  const result = await run();
  const cpuMs = procCpuMs(pid) - cpu0;
  return { sample: { qps: round(result.qps, 0), completed: result.completed, lost: result.lost, cpuUsPerQuery: round((cpuMs * 1000) / result.completed, 2), rcodes: result.rcodes }, result };
}

/** One query to the upstream on 127.0.0.1:port and its raw reply (the bytes the daemon decodes). */
async function exchange(port: number, name: string): Promise<{ query: Buffer; reply: Buffer }> {
  const query = Buffer.from(dnsPacket.encode({ type: "query", id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name, class: "IN" }] }));
  const socket = dgram.createSocket("udp4");
  try {
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer for ${name}`)), 5000);
      socket.once("message", (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      socket.send(query, port, "127.0.0.1");
    });
    return { query, reply };
  } finally {
    socket.close();
  }
}

/**
 * The decoders alone, in this process, on the upstream's real bytes: CPU ns per query for
 * readQuestion(query) + readAnswerRecords(reply), median of 5 runs, the codecs alternating.
 */
function decoderCost(msgs: { query: Buffer; reply: Buffer }): Record<Codec, { value: number; unit: "ns"; runs: number[] }> {
  const codecs = { "dns-wire": wireCodec, "dns-packet": packetCodec };
  const iterations = 200_000;
  const runs: Record<Codec, number[]> = { "dns-wire": [], "dns-packet": [] };
  let sink = 0;
  for (let r = 0; r < 6; r++) {
    for (const c of r % 2 === 0 ? CODECS : [...CODECS].reverse()) {
      const codec = codecs[c];
      const cpu0 = process.cpuUsage();
      for (let i = 0; i < iterations; i++) {
        sink += codec.readQuestion(msgs.query)?.end ?? 0;
        sink += codec.readAnswerRecords(msgs.reply)?.length ?? 0;
      }
      const cpu = process.cpuUsage(cpu0);
      if (r > 0) runs[c].push(round(((cpu.user + cpu.system) * 1000) / iterations)); // round 0 warms up
    }
  }
  if (sink === 0) throw new Error("the decoders decoded nothing");
  const out = (c: Codec) => ({ value: median(runs[c]), unit: "ns" as const, runs: runs[c] });
  return { "dns-wire": out("dns-wire"), "dns-packet": out("dns-packet") };
}

async function inner(args: Args, dir: string): Promise<void> {
  await mountPrivateBpffs();
  const loadAtStart = loadAverage();
  // 1000 warm names with plain A answers (as most real answers are), one name with 8 A records
  // (the decoders' second case) and fresh names for the cold runs.
  const names = new DnsNameFiles(dir, Array.from({ length: 8 }, (_, i) => `10.78.0.${i + 1} multi.bench.test`));
  const cold: Record<string, string[]> = {};
  for (const c of CODECS) cold[c] = await names.coldRounds(c, args.rounds, COLD_NAMES);
  const { hosts, warm: warmFile } = await names.finish();

  let upstream: Dnsmasq | null = null;
  const daemons = new Map<Codec, { daemon: BenchDaemon; id: string }>();
  try {
    upstream = await Dnsmasq.start(PORTS.upstream, [`--addn-hosts=${hosts}`, "--local-ttl=60"], path.join(dir, "upstream.log"));
    const single = await exchange(PORTS.upstream, "w1.bench.test");
    const multi = await exchange(PORTS.upstream, "multi.bench.test");
    if (wireCodec.readAnswerRecords(multi.reply)?.length !== 8) throw new Error("the upstream did not answer multi.bench.test with 8 addresses");
    const decoders = { one_a_record: decoderCost(single), eight_a_records: decoderCost(multi) };
    console.log(`decoders alone (CPU ns/query): 1 A ${JSON.stringify(decoders.one_a_record)} · 8 A ${JSON.stringify(decoders.eight_a_records)}`);
    for (const c of CODECS) daemons.set(c, await startDaemon(dir, c));
    const samples: Record<Codec, Record<"warm" | "cold", Sample[]>> = { "dns-wire": { warm: [], cold: [] }, "dns-packet": { warm: [], cold: [] } };
    const latencies: Record<Codec, number[]> = { "dns-wire": [], "dns-packet": [] };
    const base = { server: "127.0.0.1", seconds: args.seconds, clients: 4, outstanding: 100 };
    for (let r = 0; r < args.rounds; r++) {
      const order = r % 2 === 0 ? CODECS : [...CODECS].reverse();
      for (const c of order) {
        const d = daemons.get(c)!.daemon;
        const w = await measure(d, () => runDnsperf({ ...base, port: PORTS[c], dataFile: warmFile }));
        samples[c].warm.push(w.sample);
        const k = await measure(d, () => runDnsperf({ ...base, port: PORTS[c], dataFile: cold[c]![r]!, onePass: true }));
        samples[c].cold.push(k.sample);
        const l = await runDnsperf({ server: "127.0.0.1", port: PORTS[c], dataFile: warmFile, seconds: args.latencySeconds, clients: 1, outstanding: 10, maxQps: 500, verbose: true });
        latencies[c].push(...l.latenciesUs);
        console.log(`round ${r + 1} ${c.padEnd(10)} warm ${w.sample.qps} q/s ${w.sample.cpuUsPerQuery} µs CPU/q · cold ${k.sample.qps} q/s ${k.sample.cpuUsPerQuery} µs CPU/q · latency samples ${l.latenciesUs.length}`);
      }
    }
    const summary = (c: Codec) => {
      const phase = (p: "warm" | "cold") => ({
        qps: { value: median(samples[c][p].map((s) => s.qps)), unit: "queries/s", per_round: samples[c][p].map((s) => s.qps) },
        daemon_cpu_per_query: { value: median(samples[c][p].map((s) => s.cpuUsPerQuery)), unit: "µs", per_round: samples[c][p].map((s) => s.cpuUsPerQuery) },
        lost: samples[c][p].map((s) => s.lost),
        response_codes: samples[c][p].map((s) => s.rcodes),
      });
      return {
        warm: phase("warm"),
        cold: phase("cold"),
        latency_at_500qps: latencyPercentiles(latencies[c]),
      };
    };
    const results = { "dns-wire": summary("dns-wire"), "dns-packet": summary("dns-packet") };
    const ratio = (a: number, b: number): number => round(a / b, 3);
    const w = results["dns-wire"];
    const p = results["dns-packet"];
    const comparison = {
      warm_qps_wire_over_packet: ratio(w.warm.qps.value, p.warm.qps.value),
      cold_qps_wire_over_packet: ratio(w.cold.qps.value, p.cold.qps.value),
      warm_cpu_per_query_packet_over_wire: ratio(p.warm.daemon_cpu_per_query.value, w.warm.daemon_cpu_per_query.value),
      cold_cpu_per_query_packet_over_wire: ratio(p.cold.daemon_cpu_per_query.value, w.cold.daemon_cpu_per_query.value),
      p50_packet_over_wire: ratio(p.latency_at_500qps.p50.value, w.latency_at_500qps.p50.value),
      p99_packet_over_wire: ratio(p.latency_at_500qps.p99.value, w.latency_at_500qps.p99.value),
    };
    const output = {
      benchmark: "dns-codec",
      finished_at: new Date().toISOString(),
      command: `node dist/bench/dns/codec-bench.js --rounds ${args.rounds} --seconds ${args.seconds} --latency-seconds ${args.latencySeconds}`,
      machine: await machineRecord(loadAtStart, "a shared 2-vCPU VM; dnsperf, the upstream and the daemon share its cores; compare the two codecs within this run"),
      setup: {
        path: "netfenced start (attachment manager, KernelFilter, loader child), one attachment in allowlist mode (*.bench.test), every allowed answer's address in the pinned kernel map before the reply",
        difference: `only ${DNS_CODEC_ENV} in the daemon's environment: dns-wire = hand-written readQuestion/readAnswerRecords; dns-packet = dnsPacket.decode for both (daemon/src/dns/dns-wire-packet.ts)`,
        throughput_runs: `dnsperf -c 4 -q 100 -T 1 -l ${args.seconds} over 1000 warm names; cold = one pass over ${COLD_NAMES} fresh names (every answer a new kernel-map entry); ${args.rounds} rounds, order alternating, median reported`,
        latency_runs: `dnsperf -c 1 -q 10 -Q 500 -l ${args.latencySeconds} -v per round, latencies pooled over the rounds`,
        daemon_cpu_per_query: "utime+stime of the daemon's Node process (/proc/<pid>/stat) during the run / queries completed",
      },
      results,
      comparison,
      decoders_alone: {
        ...decoders,
        note: "readQuestion(query) + readAnswerRecords(reply) on the upstream's own reply bytes (w1.bench.test: 1 A; multi.bench.test: 8 A), in the benchmark process, CPU time, median of 5 runs of 200k",
      },
    };
    await writeJsonFile(args.out, output);
    console.log(JSON.stringify({ comparison, decoders, load: [output.machine.load_average_at_start.value, output.machine.load_average_at_end.value] }));
    console.log(`wrote ${args.out}`);
  } finally {
    for (const { daemon, id } of daemons.values()) await detachAndStop(daemon, id);
    await upstream?.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

const inv = invocation(process.argv.slice(2));
const args = parseArgs(inv.options);
if (inv.inner) await inner(args, requireWorkdir(inv));
else {
  await runInNetns({
    script: import.meta.url, prefix: "nfcodec", rootError: "the codec benchmark needs root (network namespace, eBPF)",
    veths: [[IFACES["dns-wire"], "nfcw0"], [IFACES["dns-packet"], "nfcw1"]],
    address: { cidr: "10.253.78.1/30", dev: IFACES["dns-wire"] },
    workdirPrefix: "nf-codecbench-",
  }, inv.options);
}
