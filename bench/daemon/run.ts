/**
 * Netfence daemon benchmarks (issue 4, "bench/daemon"). Run as root after `bash scripts/bootstrap.sh`:
 *
 *   node dist/bench/daemon/run.js [--quick] [--out FILE] [--no-readme]
 *
 * Starts the REAL daemon (`netfenced start`, KernelFilter + loader child, no control plane, the
 * local default_policy of its config, a unique pin root /sys/fs/bpf/nfbench-d-<rand>, temp socket
 * and data_dir, DNS ports 61000-62999) and measures:
 *   1. attach→enforcing latency: Attach RPC call → return, p50/p99 over 200 cgroup attaches
 *      (+ over 50 veth interfaces), enforcement verified with probes right after the return;
 *   2. `list --all` over 1000 attachments: the real CLI binary's wall time, and the raw RPC time;
 *   3. daemon RSS (VmRSS) with 1000 attachments;
 *   4. restart-to-ready with 1000 attachments (SIGTERM and kill -9), re-adopted from the pins;
 * with baselines in the same run: bpftool/tc processes per attach (a shell-script tool), and
 * an idle Node process's RSS. Writes bench/results/daemon.json and the results section of
 * bench/daemon/README.md. Everything it creates (veths, namespaces, cgroups, pins, temp dirs,
 * processes) is removed at the end — also on failure, SIGINT/SIGTERM or when the 10-minute limit
 * expires: attachments are detached through the daemon, then the pin root is removed.
 */
import type { DaemonBenchResults } from "./results.js";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { DaemonClient } from "../../cli/src/daemon-client.js";
import { Sandbox, cgroup2Mount, requireKernel, sh } from "../../test/helpers/sandbox.js";
import { machineInfo } from "../lib/machine.js";
import { withTimeout } from "../lib/time-limit.js";
import { NETFENCED } from "../lib/binaries.js";
import { cleanUpBench } from "./cleanup.js";
import { BenchDaemon, procCpuMs, procStatus } from "./daemon-process.js";
import { CgroupTargets, VethTargets } from "./bench-targets.js";
import { Prober } from "./prober-client.js";
import { attachConcurrently, attachSeries, detachAll, type AttachTarget, type ProbePlan, type VerifiedSample } from "./attach-phase.js";
import {
  attachmentKernelMemory,
  filterAttachCost,
  gracePeriodCost,
  memInfo,
  stateSaveCost,
  type MemInfo,
} from "./diagnostics.js";
import { listBench } from "./list-phase.js";
import { restartOnce, type RestartSample } from "./restart-phase.js";
import { baselineSummary, bpftoolCgroupBaseline, tcInterfaceBaseline } from "./bpftool-baseline.js";
import { kibToMb, kibToMib, round, summarize } from "./summary.js";
import { evaluateTargets, renderMarkdown } from "./report.js";

import { DNS_PORTS, ECHO_PORT, UNITS, FULL, GLOBAL_LIMIT_MS, MEM_FLOOR_KIB, QUICK, idleNodeRssMib, parseArgs, verificationSummary } from "./options.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const started = Date.now();
  const machine = machineInfo();
  const root = projectRoot();
  const args = parseArgs(process.argv.slice(2), root);
  const sizes = args.quick ? QUICK : FULL;
  const log = (msg: string) => process.stderr.write(`[bench/daemon +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
  await requireKernel();
  const cli = NETFENCED;
  const proberScript = path.join(root, "dist", "bench", "daemon", "prober.js");
  const loader = path.join(root, "bpf", "loader", "netfence-loader");
  for (const f of [cli, proberScript, loader]) if (!existsSync(f)) throw new Error(`${f} is missing: run \`bash scripts/bootstrap.sh\` first`);

  const tag = randomBytes(3).toString("hex");
  const sb = await Sandbox.create("nfd");
  const pinRoot = `/sys/fs/bpf/nfbench-d-${tag}`;
  const baselinePins = `/sys/fs/bpf/nfbench-b-${tag}`;
  const tmpDir = await mkdtemp(path.join(os.tmpdir(), "nfbench-daemon-"));
  const cgroups = new CgroupTargets(cgroup2Mount(), `d-${tag}`);
  const veths = new VethTargets(tag);
  let prober: Prober | null = null;
  let daemon: BenchDaemon | null = null;
  const loaderPids = new Set<number>();
  // One clean-up, shared: a signal may start it while the measurement is still running; the
  // measurement's own `finally` then waits for the same clean-up instead of exiting under it.
  let cleaning: Promise<void> | null = null;
  let interrupted = false;

  const cleanup = (): Promise<void> => (cleaning ??= cleanupOnce());
  const cleanupOnce = () =>
    cleanUpBench({ daemon, prober, loaderPids, pinRoot, baselinePins, veths, cgroups, sandbox: sb, keepLog: args.keepLog, tmpDir, log });
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: cleaning up`);
    interrupted = true;
    void cleanup().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  try {
    await withTimeout("the daemon benchmark", GLOBAL_LIMIT_MS, (async () => {
      // ------------------------------------------------------------------ sandbox + targets
      const net = await sb.network();
      const echo = sb.spawn(net.serverNs, [process.execPath, path.join(root, "test", "fixtures", "echo-server.mjs"), String(ECHO_PORT)]);
      await withTimeout("echo server start", 10_000, new Promise<void>((resolve) => {
        echo.stdout!.on("data", (b: Buffer) => b.toString().includes("listening") && resolve());
      }));
      const plan: ProbePlan = { allowedIp: net.serverIp4[0]!, unlistedIp: net.serverIp4[1]!, port: ECHO_PORT, timeoutMs: 500 };
      const baselineCgNames = Array.from({ length: sizes.baselineAttaches }, (_, i) => `b${String(i).padStart(3, "0")}`);
      const cgDirs = await cgroups.create(sizes.totalAttachments, ["home", ...baselineCgNames]);
      const vethNames = await veths.create(sizes.veths);
      prober = await Prober.start(net.workloadNs, proberScript);
      await prober.moveTo(cgroups.child("home"));
      const sanity = await prober.probe("udp", plan.unlistedIp, plan.port, 2000);
      if (!sanity.ok) throw new Error(`the sandbox path does not work before any filter: ${sanity.reason}`);
      log(`sandbox ${net.workloadNs}/${net.serverNs} via ${net.hostIf}; ${cgDirs.length} cgroups under ${cgroups.parent}; ${vethNames.length} veth pairs; pins ${pinRoot}`);

      // ------------------------------------------------------------------ baselines (nothing of ours attached yet)
      const idleRss = await idleNodeRssMib();
      const bpftoolCg = await bpftoolCgroupBaseline({
        obj: path.join(root, "bpf", "prebuilt", "netfence_cgroup.bpf.o"),
        pinDir: path.join(baselinePins, "cg"),
        cgroups: baselineCgNames.map((n) => cgroups.child(n)),
        limitMs: 40_000,
      });
      const tcIf = await tcInterfaceBaseline({
        obj: path.join(root, "bpf", "prebuilt", "netfence_tc.bpf.o"),
        pinDir: path.join(baselinePins, "tc"),
        interfaces: vethNames,
        limitMs: 40_000,
      });
      log(`baselines: bpftool cgroup p50 ${summarize(bpftoolCg.samples.map((s) => s.totalMs)).p50_ms} ms, tc interface p50 ${summarize(tcIf.samples.map((s) => s.totalMs)).p50_ms} ms, idle node RSS ${idleRss} MiB`);
      const filterOnly = await filterAttachCost({
        loaderPath: loader,
        pinRoot: path.join(baselinePins, "diag"),
        cgroups: baselineCgNames.slice(0, sizes.diagnosticAttaches).map((n) => cgroups.child(n)),
        limitMs: 30_000,
      });
      const rcu = await gracePeriodCost(root, 15);
      log(
        `diagnostics: KernelFilter.attach alone p50 ${filterOnly.attach.p50_ms} ms, detach ${filterOnly.detach.p50_ms} ms, ` +
          `adopt ${filterOnly.adopt_sequential_ms_per_attachment} ms/attachment one by one vs ${filterOnly.adopt_pipelined_ms_per_attachment} pipelined; ` +
          ("unavailable" in rcu ? `grace period unavailable (${rcu.unavailable})` : `RCU grace period p50 ${rcu.grace_period.p50_ms} ms`),
      );

      // ------------------------------------------------------------------ the daemon
      const defaultPolicy = { mode: "allowlist", allow_cidrs: [`${plan.allowedIp}/32`] };
      const d = new BenchDaemon({
        cli,
        dir: tmpDir,
        pinRoot,
        portMin: DNS_PORTS.min,
        portMax: DNS_PORTS.max,
        defaultPolicyYaml: `default_policy: { mode: ${defaultPolicy.mode}, allow_cidrs: [${defaultPolicy.allow_cidrs.join(", ")}] }`,
        logLevel: "info",
      });
      daemon = d;
      let t0 = performance.now();
      d.spawn();
      const first = await d.waitReady(30_000);
      const coldStartMs = performance.now() - t0;
      const coldStartCpuMs = procCpuMs(d.pid!);
      for (const pid of d.childPids()) loaderPids.add(pid);
      await sleep(1000);
      const rss0 = d.status().vmRssKiB;
      log(`daemon ${d.pid} ready in ${Math.round(coldStartMs)} ms (daemon id ${first.daemonId}), RSS ${kibToMib(rss0)} MiB`);
      const client = new DaemonClient(d.socket, 30_000);
      try {
        await client.getStatus();

        // ------------------------------------------------------------------ interface attaches
        const ifCycles: VerifiedSample[] = [];
        const ifCycleMs: number[] = [];
        for (let i = 0; i < sizes.interfaceVerified; i++) {
          const r = await attachSeries({ client, targets: [{ kind: "interface", name: net.hostIf }], limitMs: 20_000, prober, plan, verifyEvery: 1 });
          ifCycles.push(...r.verified);
          ifCycleMs.push(...r.samples.map((s) => s.ms));
          await client.detach(r.samples[0]!.id);
          const back = await prober.probe("udp", plan.unlistedIp, plan.port, 2000);
          if (!back.ok) throw new Error(`after detaching ${net.hostIf}, the unlisted address still does not answer (${back.reason})`);
        }
        const ifSeries = await attachSeries({ client, targets: vethNames.map((name): AttachTarget => ({ kind: "interface", name })), limitMs: 40_000 });
        await detachAll(client, ifSeries.samples.map((s) => s.id));
        log(`interface attaches: p50 ${summarize(ifSeries.samples.map((s) => s.ms)).p50_ms} ms over ${ifSeries.samples.length}; verified cycles on ${net.hostIf}: ${ifCycles.filter((v) => v.unlisted_blocked_after).length}/${ifCycles.length} blocked right after return`);

        // ------------------------------------------------------------------ cgroup attaches: latency, build-up, latency at scale
        const memBefore: MemInfo = memInfo();
        const memGuard = (): string | null => {
          const m = memInfo();
          return m.memAvailableKiB < MEM_FLOOR_KIB ? `MemAvailable ${kibToMib(m.memAvailableKiB)} MiB fell below the ${kibToMib(MEM_FLOOR_KIB)} MiB floor` : null;
        };
        const cgTargets = cgDirs.map((p): AttachTarget => ({ kind: "cgroup", path: p }));
        const loaderNow = d.childPids()[0];
        const cpuBefore = { daemon: procCpuMs(d.pid!), loader: loaderNow === undefined ? null : procCpuMs(loaderNow) };
        const firstSeries = await attachSeries({
          client,
          targets: cgTargets.slice(0, sizes.latencyAttaches),
          limitMs: 150_000,
          prober,
          plan,
          verifyEvery: sizes.verifyEvery,
          shouldStop: memGuard,
        });
        const firstCount = Math.max(1, firstSeries.samples.length);
        const firstCpu = {
          what: "CPU time (user + system, from /proc/<pid>/stat) per attach over the first series — includes the verified attaches' probe handling; the kernel's verifier runs in the loader's system time",
          daemon_ms_per_attach: round((procCpuMs(d.pid!) - cpuBefore.daemon) / firstCount, 2),
          loader_ms_per_attach: cpuBefore.loader === null || loaderNow === undefined ? null : round((procCpuMs(loaderNow) - cpuBefore.loader) / firstCount, 2),
        };
        await sleep(500);
        const rssLatency = d.status().vmRssKiB;
        const firstMs = firstSeries.samples.map((s) => s.ms);
        log(`cgroup attaches 1-${firstMs.length}: p50 ${summarize(firstMs).p50_ms} ms, p99 ${summarize(firstMs).p99_ms} ms`);
        let stopped = firstSeries.stopped;
        const buildUpTargets = cgTargets.slice(sizes.latencyAttaches, sizes.totalAttachments - sizes.atScaleAttaches);
        const buildUp =
          stopped === null
            ? await attachConcurrently({
                client,
                targets: buildUpTargets,
                concurrency: sizes.buildUpConcurrency,
                limitMs: 360_000,
                shouldStop: memGuard,
                onProgress: (n) => log(`  ${sizes.latencyAttaches + n} attached`),
              })
            : { ids: [], wallMs: 0, stopped };
        stopped = buildUp.stopped;
        const atScale =
          stopped === null
            ? await attachSeries({ client, targets: cgTargets.slice(sizes.totalAttachments - sizes.atScaleAttaches), limitMs: 150_000, shouldStop: memGuard })
            : { samples: [], verified: [], stopped };
        stopped = atScale.stopped;
        const allIds = [...firstSeries.samples.map((s) => s.id), ...buildUp.ids, ...atScale.samples.map((s) => s.id)];
        const reached = allIds.length;
        if (stopped !== null) log(`STOPPED at ${reached} attachments: ${stopped}`);
        const status = await client.getStatus();
        if (status.attachmentCount !== reached) throw new Error(`daemon reports ${status.attachmentCount} attachments, expected ${reached}`);
        await sleep(2000);
        const rssTotal = d.status();
        const memTotal = memInfo();
        const loaderPid = d.childPids()[0];
        const loaderRss = loaderPid === undefined ? null : kibToMib(procStatus(loaderPid).vmRssKiB);
        const atScaleMs = atScale.samples.map((s) => s.ms);
        const bpfMem = await attachmentKernelMemory(pinRoot, [allIds[0]!, allIds[Math.floor(reached / 2)]!, allIds[reached - 1]!]);
        const stateSave = await stateSaveCost(path.join(d.dataDir, "state.json"), path.join(tmpDir, "save-diagnostic"), 7);
        log(`state file ${stateSave.state_file_kib} KiB, one save p50 ${stateSave.save.p50_ms} ms`);
        log(
          `${reached} attachments: at-scale p50 ${atScaleMs.length ? summarize(atScaleMs).p50_ms : "—"} ms; RSS ${kibToMib(rssTotal.vmRssKiB)} MiB (HWM ${kibToMib(rssTotal.vmHwmKiB)}), loader ${loaderRss} MiB; ` +
            `BPF objects ${bpfMem.per_attachment_kib} KiB per attachment; VmallocUsed +${kibToMib(memTotal.vmallocUsedKiB - memBefore.vmallocUsedKiB)} MiB, MemAvailable ${kibToMib(memTotal.memAvailableKiB)} MiB`,
        );

        // ------------------------------------------------------------------ list --all
        const list = await listBench({ cli, socket: d.socket, expected: reached, runs: sizes.listRuns, cpuProfDir: args.cpuProfDir });
        log(`list --all: CLI p50 ${list.cli_wall.p50_ms} ms (node -e "" p50 ${list.node_startup_baseline.p50_ms} ms), RPC all pages ${list.rpc_list_all_page_100.p50_ms} ms, one page of 1000 ${list.rpc_single_page_1000.p50_ms} ms`);

        // ------------------------------------------------------------------ restarts
        const expectedIds = new Set(allIds);
        // The prober sits in the last verified cgroup, which is attached: it probes while the daemon is down.
        const restarts: RestartSample[] = [];
        for (const sig of ["SIGTERM", "SIGKILL"] as const) {
          for (let i = 0; i < sizes.restarts; i++) {
            for (const pid of d.childPids()) loaderPids.add(pid);
            const r = await restartOnce({ daemon: d, signal: sig, expectedIds, daemonId: first.daemonId, prober, plan, readyTimeoutMs: 30_000 });
            restarts.push(r);
            for (const pid of d.childPids()) loaderPids.add(pid);
            log(`restart after ${sig}: stop ${r.stop_ms} ms, spawn→status ${r.spawn_to_status_ms} ms, spawn→List(${r.listed}) ${r.spawn_to_list_all_ms} ms, same ids ${r.same_ids}, blocked while down ${r.blocked_while_down}`);
          }
        }
        await sleep(1000);
        const rssAfterRestarts = d.status().vmRssKiB;

        // ------------------------------------------------------------------ detach everything (timed), then the results
        const detachClient = new DaemonClient(d.socket, 30_000);
        let detachMs: number;
        try {
          const { attachments } = await detachClient.listAll(1000);
          detachMs = await detachAll(detachClient, attachments.map((a) => a.id));
          const left = (await detachClient.getStatus()).attachmentCount;
          if (left !== 0) throw new Error(`${left} attachments left after detaching all`);
        } finally {
          detachClient.close();
        }
        log(`detached ${reached} in ${Math.round(detachMs)} ms`);

        const results: DaemonBenchResults = {
          benchmark: "daemon",
          quick: args.quick,
          machine,
          loadavg1_end: round(os.loadavg()[0]!, 2),
          duration_s: Math.round((Date.now() - started) / 1000),
          units: UNITS,
          setup: {
            daemon: "cli/dist/index.js start --config FILE (the real netfenced: KernelFilter + loader child, FileStateStore in data_dir, no control plane)",
            log_level: "info",
            default_policy: defaultPolicy,
            dns: { listen_addr: "127.0.0.1", port_min: DNS_PORTS.min, port_max: DNS_PORTS.max, why: "outside the ephemeral range and the test harness' ranges; one DNS server per attachment" },
            pin_root: "/sys/fs/bpf/nfbench-d-<random> (removed at the end)",
            cgroup_targets: `${sizes.totalAttachments} empty cgroup v2 dirs <cgroup2>/nfbench-d-<random>/cNNNN (cgroup_skb egress, cgroup-link)`,
            interface_targets: `${sizes.veths} veth pairs nd<random>NNNa/b in the root namespace, left down (tcx ingress) + the sandbox's workload veth for the verified cycles`,
            client: "in-process DaemonClient (cli/src/daemon-client.ts) over the unix socket, one connected channel, sequential calls",
          },
          attach_latency: {
            what: "Attach RPC called → returned (the default policy is in the kernel and the program attached when it returns; no control-plane round trip)",
            cgroup_first: { attachments_before: "0", ...summarize(firstMs) },
            cgroup_at_scale: atScaleMs.length ? { attachments_before: `${reached - atScaleMs.length}`, ...summarize(atScaleMs) } : null,
            build_up: {
              what: `attachments ${sizes.latencyAttaches + 1}-${sizes.latencyAttaches + buildUp.ids.length} attached with ${sizes.buildUpConcurrency} Attach calls in flight (throughput, not latency)`,
              attachments: buildUp.ids.length,
              concurrency: sizes.buildUpConcurrency,
              wall_ms: round(buildUp.wallMs, 1),
              ms_per_attach: buildUp.ids.length ? round(buildUp.wallMs / buildUp.ids.length, 2) : 0,
            },
            attachments_reached: reached,
            cpu_first: firstCpu,
            stopped_early: stopped,
            interface: { what: `${ifSeries.samples.length} distinct veths, tcx ingress, attached one after another`, ...summarize(ifSeries.samples.map((s) => s.ms)) },
            interface_verified_cycles: { what: `attach (verified) + detach cycles on the sandbox's workload veth ${net.hostIf}`, ...summarize(ifCycleMs) },
            enforcement_check_cgroup: verificationSummary(firstSeries.verified),
            enforcement_check_interface: verificationSummary(ifCycles),
            detach_all_ms: round(detachMs, 1),
          },
          list_all: list,
          rss: {
            what: "VmRSS of the daemon's Node process (the loader child is a separate C process, reported separately)",
            attachments: reached,
            daemon_0_attachments_mib: kibToMib(rss0),
            daemon_at_latency_count_mib: kibToMib(rssLatency),
            daemon_at_total_mib: kibToMib(rssTotal.vmRssKiB),
            daemon_at_total_mb: kibToMb(rssTotal.vmRssKiB),
            daemon_at_total_hwm_mib: kibToMib(rssTotal.vmHwmKiB),
            daemon_at_total_after_restarts_mib: kibToMib(rssAfterRestarts),
            per_attachment_kib: round((rssTotal.vmRssKiB - rss0) / Math.max(1, reached), 1),
            loader_child_at_total_mib: loaderRss,
          },
          kernel_memory: {
            what: "kernel memory held by the attachments: the kernel's accounting of their BPF maps and programs (bpftool bytes_memlock, sampled), and /proc/meminfo deltas between no attachment and all of them (other work on the machine adds noise to those)",
            attachments: reached,
            bpf_objects: bpfMem,
            bpf_objects_total_mib: round((bpfMem.per_attachment_kib * reached) / 1024, 1),
            vmalloc_used_delta_mib: kibToMib(memTotal.vmallocUsedKiB - memBefore.vmallocUsedKiB),
            mem_available_delta_mib: kibToMib(memBefore.memAvailableKiB - memTotal.memAvailableKiB),
            per_attachment_vmalloc_kib: round((memTotal.vmallocUsedKiB - memBefore.vmallocUsedKiB) / Math.max(1, reached), 1),
            mem_available_at_total_mib: kibToMib(memTotal.memAvailableKiB),
            mem_floor_mib: kibToMib(MEM_FLOOR_KIB),
          },
          diagnostics: { filter_only: filterOnly, rcu, state_save_at_total: stateSave },
          restart: {
            attachments: reached,
            cold_start_0_attachments_ms: round(coldStartMs, 1),
            cold_start_0_attachments_cpu_ms: Math.round(coldStartCpuMs),
            runs: restarts,
            worst_spawn_to_list_all_ms: Math.max(...restarts.map((r) => r.spawn_to_list_all_ms)),
          },
          baselines: {
            bpftool_cgroup: baselineSummary(
              bpftoolCg,
              "baseline (a), cgroup: a shell-script tool attaching with one process per step (same netfence_cgroup.bpf.o, same verifier work); no policy written, nothing persisted — a lower bound",
            ),
            tc_interface: baselineSummary(
              tcIf,
              "baseline (a), interface: bpftool prog load + tc clsact + tc filter per attach on the same veths (bpftool 7.1 has no tcx attach); no policy written — a lower bound",
            ),
            idle_node_rss: { what: 'baseline (b): VmRSS of an idle Node process (node -e "setInterval(()=>{},1e9)") after 1 s', rss_mib: idleRss },
          },
          targets: [],
        };
        const withTargets: DaemonBenchResults = { ...results, targets: evaluateTargets(results) };
        await writeFile(args.out, JSON.stringify(withTargets, null, 2) + "\n");
        log(`results written to ${args.out}`);
        if (args.readme) {
          const existing = await readFile(args.readme, "utf8").catch(() => "");
          await writeFile(args.readme, renderMarkdown(existing, withTargets));
          log(`results section of ${args.readme} updated`);
        }
        for (const t of withTargets.targets) log(`${t.met ? "MET   " : "MISSED"} ${t.name}: ${t.measured} (target ${t.target})`);
      } finally {
        client.close();
      }
    })());
  } finally {
    await cleanup();
    // Interrupted: the signal handler exits (130) once the clean-up is done; nothing else to report.
    if (interrupted) await new Promise<never>(() => undefined);
    // Nothing of ours may be left: report it loudly if something is.
    const leftovers = (await sh("ip", ["-o", "link", "show"], { allowFail: true })).stdout.split("\n").filter((l) => l.includes(`nd${tag}`));
    if (leftovers.length > 0) log(`WARNING: ${leftovers.length} veths left: ${leftovers.slice(0, 3).join(" / ")}`);
  }
}

/** `--render [FILE]`: re-renders the README's results section from a results JSON (no measurement). */
async function render(argv: readonly string[]): Promise<void> {
  const root = projectRoot();
  const file = argv[0] !== undefined ? path.resolve(argv[0]) : path.join(root, "bench", "results", "daemon.json");
  const readme = path.join(root, "bench", "daemon", "README.md");
  const results = JSON.parse(await readFile(file, "utf8")) as DaemonBenchResults;
  await writeFile(readme, renderMarkdown(await readFile(readme, "utf8").catch(() => ""), results));
  process.stderr.write(`results section of ${readme} rendered from ${file}\n`);
}

const argv = process.argv.slice(2);
(argv[0] === "--render" ? render(argv.slice(1)) : main()).catch((err: unknown) => {
  process.stderr.write(`bench/daemon failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
