/**
 * Flood benchmark (issue 10): one tenant at its DNS quotas while another tenant's DNS latency and
 * kernel verdicts are measured, against the unloaded figures of the same run. Usage (root, after
 * `npm run build`):
 *
 *   node dist/bench/flood/flood-bench.js [--rounds 3] [--seconds 8] [--out FILE] [--no-readme]
 *
 * The REAL daemon (`netfenced start`, KernelFilter + loader, no control plane: default_policy
 * allowlist for packets, DNS denylist so every name resolves and opens its answer), dnsmasq as the
 * upstream, every tenant in its own network namespace behind an attached veth on one bridge:
 *
 *   A  the flooding tenant (config default quotas: 1000 q/s, 128 upstream queries in flight,
 *      16384 learned addresses, 32 records per answer)
 *   B  the measured tenant: one DNS query every 5 ms and one TCP connect every 20 ms through its
 *      filter to an address its DNS answer opened (every 10th to a blocked address: must fail)
 *
 * Phases, interleaved in every round (so drift hits all of them alike):
 *   unloaded   B alone
 *   control    A's load generator at 4,000 q/s aimed at a port its filter drops (no daemon work):
 *              what the generator's own CPU and packets cost B on this machine
 *   sink       A sends 4,000 q/s of never-answered names (a zone dnsmasq forwards to a silent server)
 *   big        A sends 300 q/s for 600 names of 200 A records each (EDNS 4096): records capped,
 *              learned addresses up to the quota, then SERVFAIL
 *
 * Recorded per phase and round: B's DNS p50/p99, B's connect p50/p99, failures, blocked-address
 * leaks, A's replies by rcode, the daemon's RSS (sampled every 250 ms) and CPU, load average.
 * Target: B's loaded p50/p99 (DNS and connect) within 10 % of the unloaded ones, no failure, no
 * leak, RSS bounded. Writes bench/results/flood.json and the results section of bench/flood/README.md.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { requireKernel, Sandbox } from "../../test/helpers/sandbox.js";
import { Dnsmasq, dig } from "../../test/helpers/e2e.js";
import { addBridgeHost } from "../../test/helpers/security.js";
import { machineInfo } from "../lib/machine.js";
import { median, round } from "../lib/stats.js";
import { withTimeout } from "../lib/time-limit.js";
import { mdRow, spliceResultsSection } from "../lib/readme-results.js";
import { procCpuMs, procStatus } from "../daemon/daemon-process.js";
import { FloodDaemon } from "./flood-daemon.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PORT = 7461;
const BIG_NAMES = 600;
// FLOOD_PHASES=unloaded,big runs a subset (diagnosis); the report needs all four.
const PHASES = (process.env["FLOOD_PHASES"]?.split(",") ?? ["unloaded", "control", "sink", "big"]) as readonly Phase[];
type Phase = "unloaded" | "control" | "sink" | "big";

interface VictimResult {
  dns: { ok: number; failed: number; rcodes: Record<string, number>; p50Ms: number | null; p99Ms: number | null };
  connect: { ok: number; failed: number; p50Ms: number | null; p99Ms: number | null };
  blocked: { tries: number; leaked: number };
}
interface AttackerResult { sent: number; replies: number; rcodes: Record<string, number>; bytes: number }
interface PhaseSample {
  round: number;
  phase: Phase;
  victim: VictimResult;
  attacker: AttackerResult | null;
  rssMiB: { start: number; peak: number; end: number };
  daemonCpuCores: number;
  loadavg1: number;
}

function parseArgs(argv: string[]): { rounds: number; seconds: number; out: string; readme: boolean } {
  const a = { rounds: 3, seconds: 8, out: path.join(projectRoot(), "bench", "results", "flood.json"), readme: true };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (argv[i] === "--rounds" && v !== undefined) a.rounds = Math.min(9, Math.max(1, Number(v)));
    else if (argv[i] === "--seconds" && v !== undefined) a.seconds = Math.min(60, Math.max(3, Number(v)));
    else if (argv[i] === "--out" && v !== undefined) a.out = path.resolve(v);
    else if (argv[i] === "--no-readme") {
      a.readme = false;
      continue;
    } else throw new Error(`unknown argument ${argv[i]}`);
    i++;
  }
  return a;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  await requireKernel();
  const machine = machineInfo();
  const sb = await Sandbox.create("nffl");
  const hostsDir = mkdtempSync(path.join(os.tmpdir(), "nf-flood-"));
  let daemon: FloodDaemon | null = null;
  let upstream: Dnsmasq | null = null;
  const ids: string[] = [];
  const stopAll = async (): Promise<void> => {
    await daemon?.cleanup(ids).catch(() => undefined);
    await upstream?.stop().catch(() => undefined);
    await sb.cleanup();
    rmSync(hostsDir, { recursive: true, force: true });
  };
  const onSignal = (): void => void stopAll().finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const net = await sb.network({ hostAddress: true });
    const b = await addBridgeHost(sb, net, 3);
    const s = net.serverIp4;
    // A TCP echo server for B's connects (the test fixture's .mjs files are not in dist/).
    sb.spawn(net.serverNs, [process.execPath, "-e", `require("node:net").createServer((c)=>{c.on("error",()=>{});c.pipe(c)}).listen(${PORT})`]);
    sb.spawn(net.serverNs, [process.execPath, "-e", `require("node:dgram").createSocket("udp4").bind(5300, "${s[8]}")`]);
    const lines: string[] = [];
    for (let n = 0; n < BIG_NAMES; n++) for (let i = 0; i < 200; i++) lines.push(`10.${64 + (n >> 6)}.${((n & 63) << 2) | (i >> 6)}.${(i & 63) + 1} m${n}.big.flood`);
    writeFileSync(path.join(hostsDir, "big.hosts"), `${lines.join("\n")}\n`);
    upstream = await Dnsmasq.start(sb, net.serverNs, s[9]!, [
      { name: "echo.flood", ipv4: s[0] },
      { name: "b.flood", ipv4: s[1] },
    ], [`--server=/sink.flood/${s[8]}#5300`, `--addn-hosts=${path.join(hostsDir, "big.hosts")}`, "--edns-packet-max=4096", "--dns-forward-max=10000"]);
    const portMin = 40000 + (process.pid % 500) * 16;
    daemon = new FloodDaemon({
      pinRoot: await sb.pinRoot(),
      listenAddr: net.hostIp4!,
      upstream: `${s[9]}:53`,
      portMin,
      metricsPort: portMin + 15,
      defaultPolicyYaml: ["default_policy:", "  mode: allowlist", "  dns:", "    mode: denylist"].join("\n"),
    });
    await daemon.start();
    const a = await daemon.attach(net.hostIf, { "netfence.workload-ips": net.workloadIp4 });
    ids.push(a.id);
    const bb = await daemon.attach(b.hostIf, { "netfence.workload-ips": b.ip4 });
    ids.push(bb.id);
    const dnsHost = net.hostIp4!;
    const portA = a.dnsPort;
    const portB = bb.dnsPort;
    // B opens its connect target through its own DNS, as a workload would.
    const opened = await dig(sb, b.ns, dnsHost, portB, "echo.flood", "A");
    if (opened.answers[0]?.data !== s[0]) throw new Error(`B could not resolve its target: ${opened.raw}`);
    const pid = daemon.pid;
    const samples: PhaseSample[] = [];
    const node = (script: string): string => path.join(HERE, script);
    const ms = args.seconds * 1000;
    for (let round = 1; round <= args.rounds; round++) {
      for (const phase of PHASES) {
        const loadavg1 = round2(os.loadavg()[0]!);
        const cpu0 = procCpuMs(pid);
        const t0 = performance.now();
        const rss = { start: procStatus(pid).vmRssKiB / 1024, peak: 0, end: 0 };
        const sampler = setInterval(() => (rss.peak = Math.max(rss.peak, procStatus(pid).vmRssKiB / 1024)), 250);
        const victim = sb.exec(b.ns, [process.execPath, node("victim.js"), dnsHost, String(portB), "b.flood", String(ms), "5", s[0]!, s[5]!, String(PORT), "20"], { timeoutMs: ms + 20_000 });
        // control: the sink generator aimed at port 9 of the same address, which A's filter drops.
        const attacker =
          phase === "unloaded"
            ? null
            : sb.exec(net.workloadNs, [process.execPath, node("attacker.js"), dnsHost, phase === "control" ? "9" : String(portA), phase === "big" ? "300" : "4000", String(ms), phase === "big" ? "big" : "sink", String(BIG_NAMES)], { timeoutMs: ms + 20_000 });
        const [v, at] = await withTimeout(`phase ${phase}`, ms + 30_000, Promise.all([victim, attacker]));
        clearInterval(sampler);
        rss.end = procStatus(pid).vmRssKiB / 1024;
        rss.peak = Math.max(rss.peak, rss.end, rss.start);
        const sample: PhaseSample = {
          round, phase,
          victim: JSON.parse(v.stdout) as VictimResult,
          attacker: at === null ? null : (JSON.parse(at.stdout) as AttackerResult),
          rssMiB: { start: round2(rss.start), peak: round2(rss.peak), end: round2(rss.end) },
          daemonCpuCores: round2((procCpuMs(pid) - cpu0) / (performance.now() - t0)),
          loadavg1,
        };
        samples.push(sample);
        process.stdout.write(`round ${round} ${phase}: B dns p50 ${sample.victim.dns.p50Ms?.toFixed(3)} p99 ${sample.victim.dns.p99Ms?.toFixed(3)} ms, connect p50 ${sample.victim.connect.p50Ms?.toFixed(3)} p99 ${sample.victim.connect.p99Ms?.toFixed(3)} ms, failures ${sample.victim.dns.failed}/${sample.victim.connect.failed}, leaks ${sample.victim.blocked.leaked}; A ${JSON.stringify(sample.attacker?.rcodes ?? {})}; RSS peak ${sample.rssMiB.peak} MiB, daemon ${sample.daemonCpuCores} cores, load ${loadavg1}\n`);
      }
    }
    const metrics = await daemon.metrics();
    const aLearned = metrics.get(`netfence_dns_learned_addresses{attachment="${a.id}"}`) ?? null;
    const aOutcomes = Object.fromEntries([...metrics].filter(([k]) => k.startsWith(`netfence_dns_queries{attachment="${a.id}"`)).map(([k, v]) => [/outcome="([^"]+)"/.exec(k)![1]!, v]));
    const summary = summarize(samples);
    const doc = { benchmark: "flood", machine, rounds: args.rounds, secondsPerPhase: args.seconds, attackerQuotas: "config defaults: 1000 q/s, 128 in flight, 16384 learned, 32 records per answer", summary, attacker: { learnedAddresses: aLearned, outcomes: aOutcomes }, samples };
    writeFileSync(args.out, `${JSON.stringify(doc, null, 2)}\n`);
    process.stdout.write(`wrote ${args.out}\n${JSON.stringify(summary, null, 2)}\n`);
    if (args.readme) {
      const readme = path.join(projectRoot(), "bench", "flood", "README.md");
      writeFileSync(readme, spliceResultsSection(readFileSync(readme, "utf8"), "bench/flood/flood-bench.ts", renderMarkdown(doc.machine, summary, aLearned, aOutcomes, args)));
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await stopAll();
  }
}

function round2(x: number): number {
  return round(x, 2);
}

interface PhaseSummary {
  dnsP50Ms: number;
  dnsP99Ms: number;
  connectP50Ms: number;
  connectP99Ms: number;
  failures: number;
  leaks: number;
  rssPeakMiB: number;
  daemonCpuCores: number;
  loadavg1: number;
  attackerRcodes: Record<string, number>;
  /** Lowest and highest per-round figure (the run-to-run spread). */
  spread: { dnsP50: [number, number]; dnsP99: [number, number]; connectP50: [number, number]; connectP99: [number, number] };
  /** Loaded ÷ unloaded (medians over rounds). */
  ratio?: { dnsP50: number; dnsP99: number; connectP50: number; connectP99: number };
  within10pct?: boolean;
  /** Every loaded median at most 10 % above the HIGHEST unloaded round (the machine's own spread). */
  withinUnloadedSpread?: boolean;
  /** sink ÷ control: what the daemon's quota handling adds beyond the generator's load (same rate). */
  vsControl?: { dnsP50: number; dnsP99: number; connectP50: number; connectP99: number };
}

function summarize(samples: PhaseSample[]): Record<Phase, PhaseSummary> {
  const of = (phase: Phase): PhaseSummary => {
    const ss = samples.filter((x) => x.phase === phase);
    const med = (f: (x: PhaseSample) => number | null): number => round(median(ss.map(f).filter((v): v is number => v !== null)), 3);
    const range = (f: (x: PhaseSample) => number | null): [number, number] => {
      const v = ss.map(f).filter((x): x is number => x !== null);
      return [round(Math.min(...v), 3), round(Math.max(...v), 3)];
    };
    const rcodes: Record<string, number> = {};
    for (const x of ss) for (const [k, v] of Object.entries(x.attacker?.rcodes ?? {})) rcodes[k] = (rcodes[k] ?? 0) + v;
    return {
      dnsP50Ms: med((x) => x.victim.dns.p50Ms),
      dnsP99Ms: med((x) => x.victim.dns.p99Ms),
      connectP50Ms: med((x) => x.victim.connect.p50Ms),
      connectP99Ms: med((x) => x.victim.connect.p99Ms),
      failures: ss.reduce((n, x) => n + x.victim.dns.failed + x.victim.connect.failed, 0),
      leaks: ss.reduce((n, x) => n + x.victim.blocked.leaked, 0),
      rssPeakMiB: Math.max(...ss.map((x) => x.rssMiB.peak)),
      daemonCpuCores: med((x) => x.daemonCpuCores),
      loadavg1: med((x) => x.loadavg1),
      attackerRcodes: rcodes,
      spread: { dnsP50: range((x) => x.victim.dns.p50Ms), dnsP99: range((x) => x.victim.dns.p99Ms), connectP50: range((x) => x.victim.connect.p50Ms), connectP99: range((x) => x.victim.connect.p99Ms) },
    };
  };
  const base = of("unloaded");
  const out = { unloaded: base } as Record<Phase, PhaseSummary>;
  const ratios = (p: PhaseSummary, b: PhaseSummary) => ({
    dnsP50: round(p.dnsP50Ms / b.dnsP50Ms, 3),
    dnsP99: round(p.dnsP99Ms / b.dnsP99Ms, 3),
    connectP50: round(p.connectP50Ms / b.connectP50Ms, 3),
    connectP99: round(p.connectP99Ms / b.connectP99Ms, 3),
  });
  for (const phase of ["control", "sink", "big"] as const) {
    if (!samples.some((x) => x.phase === phase)) continue;
    const p = of(phase);
    p.ratio = ratios(p, base);
    if (phase === "sink" && out.control !== undefined) p.vsControl = ratios(p, out.control);
    p.within10pct = Object.values(p.ratio).every((r) => r <= 1.1) && p.failures === 0 && p.leaks === 0;
    p.withinUnloadedSpread =
      p.dnsP50Ms <= base.spread.dnsP50[1] * 1.1 && p.dnsP99Ms <= base.spread.dnsP99[1] * 1.1 &&
      p.connectP50Ms <= base.spread.connectP50[1] * 1.1 && p.connectP99Ms <= base.spread.connectP99[1] * 1.1 && p.failures === 0 && p.leaks === 0;
    out[phase] = p;
  }
  return out;
}

function renderMarkdown(
  machine: ReturnType<typeof machineInfo>, s: Record<Phase, PhaseSummary>, aLearned: number | null, aOutcomes: Record<string, number>,
  args: { rounds: number; seconds: number },
): string {
  const rows = PHASES.map((phase) => {
    const p = s[phase];
    const r = p.ratio;
    const f = (v: number, k: keyof NonNullable<PhaseSummary["ratio"]>): string => (r === undefined ? `${v}` : `${v} (×${r[k]})`);
    const yn = (b: boolean | undefined): string => (b === undefined ? "—" : b ? "yes" : "no");
    return mdRow([phase, f(p.dnsP50Ms, "dnsP50"), f(p.dnsP99Ms, "dnsP99"), f(p.connectP50Ms, "connectP50"), f(p.connectP99Ms, "connectP99"), p.failures, p.leaks, p.rssPeakMiB, p.daemonCpuCores, p.loadavg1, yn(p.within10pct), yn(p.withinUnloadedSpread)]);
  });
  return [
    `Run ${machine.date} on ${machine.nproc} vCPU ${machine.cpuModel}, Linux ${machine.kernel}, Node ${machine.node}; ${args.rounds} rounds × ${args.seconds} s per phase (medians over rounds).`,
    "",
    mdRow(["phase", "B DNS p50 ms", "B DNS p99 ms", "B connect p50 ms", "B connect p99 ms", "B failures", "blocked leaks", "daemon RSS peak MiB", "daemon CPU (cores)", "load avg", "within 10 % (medians)", "within 10 % of the worst unloaded round"]),
    mdRow(["---", "---", "---", "---", "---", "---", "---", "---", "---", "---", "---", "---"]),
    ...rows,
    "",
    s.sink.vsControl === undefined ? "" : `Sink ÷ control (the same 4,000 q/s generator, dropped by A's filter instead of handled by the daemon): DNS p50 ×${s.sink.vsControl.dnsP50}, p99 ×${s.sink.vsControl.dnsP99}; connect p50 ×${s.sink.vsControl.connectP50}, p99 ×${s.sink.vsControl.connectP99}.`,
    "",
    `Unloaded, round to round (the machine's own spread): DNS p50 ${s.unloaded.spread.dnsP50.join("–")} ms, p99 ${s.unloaded.spread.dnsP99.join("–")} ms; connect p50 ${s.unloaded.spread.connectP50.join("–")} ms, p99 ${s.unloaded.spread.connectP99.join("–")} ms.`,
    "",
    `Attacker A at the end: ${aLearned ?? "?"} learned addresses (quota 16384); outcomes ${Object.entries(aOutcomes).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(", ")}.`,
  ].join("\n");
}

await main();
