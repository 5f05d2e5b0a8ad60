/**
 * Control-plane benchmark. Usage: `node dist/bench/control-plane/control-plane-bench.js [--out FILE]
 * [--commands 2000] [--daemons 1000] [--heartbeat-seconds 10]` (after `npm run build`).
 *
 * 1. Command round trip over real gRPC on loopback: SDK `daemon.send()` → ControlPlaneClient →
 *    parse → host.applyCommand → CommandResult → promise resolved. The host here applies in
 *    memory, so this is the control-plane path alone; the kernel apply is measured by the datapath
 *    benchmark (and end to end by the daemon e2e bench).
 * 2. BulkUpdate of 10k CIDRs over the same path (encode, send, parse/validate 10k prefixes, result).
 *    Then both again with the real AttachmentManager + KernelFilter on a sandbox veth (root,
 *    bpffs): the result is sent only once the kernel map update is acknowledged.
 * 3. One netfence-cp process (the real binary, YAML policy) driving N simulated daemon streams:
 *    time until all are synced and acked, the netfence-cp CPU while every daemon heartbeats each
 *    second, and the fan-out time of a policy reload to every attachment.
 * Every phase is bounded in time; results go to bench/results/control-plane.json.
 * In-process (client, manager, memory store); through a real `netfenced start`: daemon-path-bench.ts.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import pino from "pino";
import { ControlPlane, DaemonEventSchema, type ControlCommand, type DaemonEvent } from "@netfence/proto/control";
import { methodDefinition } from "@netfence/proto/grpc";
import { ControlPlaneClient } from "../../daemon/src/control-plane/connection.js";
import type { ControlPlaneHost } from "../../daemon/src/control-plane/control-plane-host.js";
import type { AttachmentStatsView, AttachmentView } from "../../daemon/src/attachments/attachment-view.js";
import type { PolicyCommand } from "../../daemon/src/policy/policy.js";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { ControlPlaneServer, type DaemonHandle } from "@netfence/control-plane-sdk";
import { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import { AttachmentManager } from "../../daemon/src/attachments/manager.js";
import { findCgroup2Mount } from "../../daemon/src/attachments/target.js";
import { MemoryStateStore } from "../../daemon/src/store/state-store.js";
import { createDnsServerFactory } from "../../daemon/src/dns/dns-server-factory.js";
import type { LearnedAddressSink } from "../../daemon/src/dns/learned-sink.js";
import { requireKernel, Sandbox } from "../../test/helpers/sandbox.js";
import { NETFENCE_CP } from "../lib/binaries.js";

const CONNECT = methodDefinition(ControlPlane.method.connect);
const silent = pino({ level: "silent" });

interface Args {
  out: string;
  commands: number;
  daemons: number;
  heartbeatSeconds: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { out: path.join(projectRoot(), "bench", "results", "control-plane.json"), commands: 2000, daemons: 1000, heartbeatSeconds: 10 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--out") args.out = path.resolve(next());
    else if (a === "--commands") args.commands = Math.min(100_000, Math.max(10, Number(next())));
    else if (a === "--daemons") args.daemons = Math.min(5000, Math.max(1, Number(next())));
    else if (a === "--heartbeat-seconds") args.heartbeatSeconds = Math.min(60, Math.max(1, Number(next())));
    else throw new Error(`unknown argument ${a}`);
  }
  return args;
}

// ------------------------------------------------------------------------------------- helpers

function percentile(samples: readonly number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const r3 = (x: number): number => Math.round(x * 1000) / 1000;

async function until(pred: () => boolean, what: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** In-memory host: applies instantly, so the figures are the control-plane path itself. */
class MemoryHost implements ControlPlaneHost {
  applied = 0;
  readonly views: AttachmentView[] = [{
    id: "bench-att", target: "veth-bench", type: "interface", mode: "allowlist", dnsMode: "disabled",
    dnsAddress: "127.0.0.1:11000", metadata: {}, attachedAtMs: 0, method: "tcx",
  }];
  attachments(): readonly AttachmentView[] {
    return this.views;
  }
  async applyCommand(_id: string, _command: PolicyCommand): Promise<void> {
    this.applied++;
  }
  async stats(): Promise<readonly AttachmentStatsView[]> {
    return [];
  }
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14, 15 of stat)
}

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

// ------------------------------------------------------------------------ 1 + 2: command path

async function commandPath(args: Args): Promise<Record<string, unknown>> {
  let daemon: DaemonHandle | null = null;
  const server = new ControlPlaneServer({
    logger: silent,
    commandTimeoutMs: 30_000,
    hooks: {
      onSubscribed: () => ({ mode: "allowlist" }),
      onDaemonSynced: (d) => {
        daemon = d;
      },
    },
  });
  const port = await server.listen("127.0.0.1:0");
  const host = new MemoryHost();
  const client = new ControlPlaneClient({
    url: `127.0.0.1:${port}`, daemonId: "bench", hostname: os.hostname(), metadata: {}, heartbeatIntervalMs: 3_600_000,
    subscribeAckTimeoutMs: 5000, host, logger: silent,
  });
  client.start();
  try {
    await until(() => daemon !== null, "daemon sync", 10_000);
    const d = daemon as unknown as DaemonHandle;
    // Warm-up (JIT, HTTP/2 windows), not measured.
    for (let i = 0; i < 200; i++) await d.allowCidr("bench-att", `10.${i % 256}.0.0/16`);
    const rtt: number[] = [];
    const phaseEnd = Date.now() + 60_000;
    for (let i = 0; i < args.commands && Date.now() < phaseEnd; i++) {
      const t0 = performance.now();
      const o = i % 2 === 0 ? await d.allowCidr("bench-att", `10.${(i >> 8) % 256}.${i % 256}.0/24`, 300) : await d.removeCidr("bench-att", `10.${(i >> 8) % 256}.${(i - 1) % 256}.0/24`);
      rtt.push(performance.now() - t0);
      if (!o.applied) throw new Error(`command rejected: ${o.error}`);
    }
    const bulkMs: number[] = [];
    const cidrs = Array.from({ length: 10_000 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`);
    for (let rep = 0; rep < 10; rep++) {
      const t0 = performance.now();
      const o = await d.bulkUpdate("bench-att", { mode: "allowlist", allow: cidrs, dns: { mode: "disabled" } });
      bulkMs.push(performance.now() - t0);
      if (!o.applied) throw new Error(`bulk rejected: ${o.error}`);
    }
    return {
      roundTrip: {
        what: "SDK send → gRPC → ControlPlaneClient parse → host.applyCommand (in memory) → CommandResult → resolved",
        kernelApplyIncluded: false,
        commands: rtt.length,
        p50Ms: r3(percentile(rtt, 50)),
        p99Ms: r3(percentile(rtt, 99)),
        maxMs: r3(Math.max(...rtt)),
        targetP50Ms: 1,
      },
      bulkUpdate10k: {
        what: "BulkUpdate of 10,000 CIDRs: encode, send, parse+validate every prefix, apply (in memory), CommandResult",
        kernelApplyIncluded: false,
        repetitions: bulkMs.length,
        p50Ms: r3(percentile(bulkMs, 50)),
        maxMs: r3(Math.max(...bulkMs)),
        targetMs: 50,
      },
    };
  } finally {
    client.stop();
    await server.close(200);
  }
}


// ------------------------------------------------------------ 1k + 2k: through the real kernel

/**
 * The same two measurements with the real AttachmentManager and KernelFilter (eBPF via the loader
 * child) behind the client, attached to a sandbox veth: the CommandResult is sent only after the
 * kernel map update was acknowledged by the loader, so this is "command sent → applied in the
 * kernel → result back".
 */
async function kernelPath(args: Args): Promise<Record<string, unknown>> {
  await requireKernel();
  const sb = await Sandbox.create("cpb");
  let filter: KernelFilter | null = null;
  let manager: AttachmentManager | null = null;
  let client: ControlPlaneClient | null = null;
  let daemon: DaemonHandle | null = null;
  const server = new ControlPlaneServer({
    logger: silent,
    commandTimeoutMs: 30_000,
    hooks: { onSubscribed: () => ({ mode: "allowlist", allow: ["100.64.0.0/24"] }), onDaemonSynced: (d) => { daemon = d; } },
  });
  try {
    const net = await sb.network();
    const port = await server.listen("127.0.0.1:0");
    filter = await KernelFilter.start({ pinRoot: await sb.pinRoot() });
    let mgr: AttachmentManager | null = null;
    // Time spent inside the manager (plan + kernel apply + persist) for BulkUpdates, to split the
    // end-to-end figure into control-plane path and manager/kernel part.
    const managerBulkMs: number[] = [];
    const host: ControlPlaneHost = {
      attachments: () => mgr!.attachments(),
      applyCommand: async (id, cmd) => {
        const t0 = performance.now();
        await mgr!.applyCommand(id, cmd);
        if (cmd.kind === "bulk-update") managerBulkMs.push(performance.now() - t0);
      },
      stats: () => mgr!.stats(),
    };
    const learned: LearnedAddressSink = { write: (id, items) => mgr!.learnedSink.write(id, items), epoch: (id) => mgr!.learnedSink.epoch(id) };
    client = new ControlPlaneClient({
      url: `127.0.0.1:${port}`, daemonId: "bench-kernel", hostname: os.hostname(), metadata: {}, heartbeatIntervalMs: 3_600_000,
      subscribeAckTimeoutMs: 5000, host, logger: silent,
    });
    manager = new AttachmentManager({
      filter, policySource: client, store: new MemoryStateStore(),
      dnsServers: createDnsServerFactory({ defaultUpstreams: ["127.0.0.1:53"], learned, logger: silent }),
      logger: silent, dns: { listenAddr: "127.0.0.1", portMin: 12_800, portMax: 12_900 },
      cgroupRoot: findCgroup2Mount(), gcIntervalMs: 0,
    });
    mgr = manager;
    await manager.start();
    client.start();
    await until(() => daemon !== null, "daemon sync", 10_000);
    const view = await manager.attach({ target: { kind: "interface", name: net.hostIf, direction: "ingress" }, metadata: {} });
    const d = daemon as unknown as DaemonHandle;
    for (let i = 0; i < 100; i++) await d.allowCidr(view.id, `100.65.${i}.0/24`);
    const rtt: number[] = [];
    const phaseEnd = Date.now() + 60_000;
    for (let i = 0; i < args.commands && Date.now() < phaseEnd; i++) {
      const cidr = `100.66.${(i >> 1) % 256}.${(i >> 9) % 256}/32`;
      const t0 = performance.now();
      const o = i % 2 === 0 ? await d.allowCidr(view.id, cidr) : await d.removeCidr(view.id, cidr);
      rtt.push(performance.now() - t0);
      if (!o.applied) throw new Error(`command rejected: ${o.error}`);
    }
    const bulkMs: number[] = [];
    for (let rep = 0; rep < 10; rep++) {
      const cidrs = Array.from({ length: 10_000 }, (_, i) => `100.${64 + (rep % 2) * 8 + (i >> 12)}.${(i >> 4) & 255}.${(i & 15) << 4}/28`);
      const t0 = performance.now();
      const o = await d.bulkUpdate(view.id, { mode: "allowlist", allow: cidrs, dns: { mode: "disabled" } });
      bulkMs.push(performance.now() - t0);
      if (!o.applied) throw new Error(`bulk rejected: ${o.error}`);
    }
    await manager.detach(view.id);
    return {
      kernelRoundTrip: {
        what: "SDK send → gRPC → client → AttachmentManager → KernelFilter map update acked by the loader → CommandResult → resolved",
        kernelApplyIncluded: true,
        commands: rtt.length,
        p50Ms: r3(percentile(rtt, 50)),
        p99Ms: r3(percentile(rtt, 99)),
        maxMs: r3(Math.max(...rtt)),
        targetP50Ms: 1,
      },
      kernelBulkUpdate10k: {
        what: "BulkUpdate of 10,000 CIDRs end to end: wire, validation, manager plan, atomic kernel replace, CommandResult",
        kernelApplyIncluded: true,
        repetitions: bulkMs.length,
        p50Ms: r3(percentile(bulkMs, 50)),
        maxMs: r3(Math.max(...bulkMs)),
        insideManagerApplyCommandP50Ms: r3(percentile(managerBulkMs, 50)),
        targetMs: 50,
      },
    };
  } finally {
    client?.stop();
    await manager?.stop().catch(() => undefined);
    await filter?.close().catch(() => undefined);
    await server.close(100);
    await sb.cleanup();
  }
}

// -------------------------------------------------------------------- 3: many daemon streams

const POLICY = (variant: number): string => `
defaults: {mode: block-all}
rules:
  - name: sim
    match: {sim: "yes"}
    mode: allowlist
    allow: [${Array.from({ length: 50 }, (_, i) => `10.${variant}.${i}.0/24`).join(", ")}]
    deny: [169.254.169.254]
    dns: {mode: allowlist, allow: ["*.example.com", "pypi.org"], upstreams: ["127.0.0.1:53"]}
`;

interface SimDaemon {
  call: grpc.ClientDuplexStream<DaemonEvent, ControlCommand>;
  synced: boolean;
  acked: boolean;
  bulk: number;
}

async function manyDaemons(args: Args): Promise<Record<string, unknown>> {
  const main = NETFENCE_CP;
  const dir = mkdtempSync(path.join(os.tmpdir(), "netfence-cp-bench-"));
  const policyPath = path.join(dir, "policy.yaml");
  writeFileSync(policyPath, POLICY(1));
  let cp: ChildProcess | null = null;
  const channels: grpc.Client[] = [];
  const sims: SimDaemon[] = [];
  try {
    cp = spawn(process.execPath, [main, "--listen", "127.0.0.1:0", "--policy", policyPath, "--log-level", "warn"], { stdio: ["ignore", "pipe", "inherit"] });
    const child = cp;
    // netfence-cp logs "netfence-cp serving" with the bound port at info; warn level hides it, so
    // ask the kernel which port the child listens on instead.
    const port = await findListeningPort(child.pid!, 15_000);
    for (let c = 0; c < 50; c++) channels.push(new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()));
    const cpu0 = cpuTicks(child.pid!);
    const t0 = performance.now();
    for (let i = 0; i < args.daemons; i++) {
      const call = channels[i % channels.length]!.makeBidiStreamRequest(CONNECT.path, CONNECT.requestSerialize, CONNECT.responseDeserialize, new grpc.Metadata(), {}) as grpc.ClientDuplexStream<DaemonEvent, ControlCommand>;
      const sim: SimDaemon = { call, synced: false, acked: false, bulk: 0 };
      call.on("data", (cmd: ControlCommand) => {
        const c = cmd.command.case;
        if (c === "syncAck") sim.synced = true;
        else if (c === "subscribedAck") sim.acked = true;
        else if (c === "bulkUpdate") sim.bulk++;
        // Behave like a Netfence daemon: confirm commands that carry a command_id.
        if (cmd.commandId !== "") call.write(create(DaemonEventSchema, { event: { case: "commandResult", value: { commandId: cmd.commandId, attachmentId: cmd.id, applied: true } } }));
      });
      call.on("error", () => undefined);
      const attachments = [0, 1].map((k) => ({ id: `sim${i}-${k}`, target: `veth${i}-${k}`, type: 1, mode: 2, dnsMode: 2, metadata: { sim: "yes" } }));
      call.write(create(DaemonEventSchema, { event: { case: "sync", value: { daemonId: `sim-${i}`, hostname: `host-${i}`, metadata: { rack: String(i % 40) }, attachments } } }));
      call.write(create(DaemonEventSchema, { event: { case: "subscribed", value: { id: `sim${i}-new`, target: `veth${i}-new`, type: 1, dnsAddress: "127.0.0.1:11000", metadata: { sim: "yes" } } } }));
      sims.push(sim);
    }
    await until(() => sims.every((s) => s.synced && s.acked && s.bulk >= 2), "all daemons synced, reconciled and acked", 120_000);
    const connectMs = performance.now() - t0;
    const cpuConnect = (cpuTicks(child.pid!) - cpu0) / CLK_TCK;

    // Heartbeats: every daemon once per second (staggered), for heartbeatSeconds.
    const hbCpu0 = cpuTicks(child.pid!);
    const hbT0 = performance.now();
    let heartbeats = 0;
    const perTick = Math.ceil(args.daemons / 20);
    let next = 0;
    const timer = setInterval(() => {
      for (let k = 0; k < perTick; k++) {
        const s = sims[next]!;
        next = (next + 1) % sims.length;
        s.call.write(create(DaemonEventSchema, { event: { case: "heartbeat", value: { stats: [0, 1].map((a) => ({ id: `sim${next}-${a}`, packetsAllowed: BigInt(heartbeats), packetsBlocked: 3n })) } } }));
        heartbeats++;
      }
    }, 50);
    await new Promise((r) => setTimeout(r, args.heartbeatSeconds * 1000));
    clearInterval(timer);
    const hbWallS = (performance.now() - hbT0) / 1000;
    const hbCpuS = (cpuTicks(child.pid!) - hbCpu0) / CLK_TCK;

    // Reload fan-out: one edit changes the policy of every attachment (3 per daemon).
    const before = sims.map((s) => s.bulk);
    const reloadT0 = performance.now();
    writeFileSync(policyPath, POLICY(2));
    await until(() => sims.every((s, i) => s.bulk >= before[i]! + 3), "reload pushed to every attachment", 120_000);
    const reloadMs = performance.now() - reloadT0;

    return {
      manyDaemons: {
        what: "one netfence-cp process (real binary, YAML policy) and N simulated daemon streams (2 synced + 1 subscribed attachment each)",
        daemons: args.daemons,
        attachments: args.daemons * 3,
        allSyncedReconciledAckedMs: Math.round(connectMs),
        netfenceCpCpuSecondsDuringConnect: r3(cpuConnect),
        heartbeatsSent: heartbeats,
        heartbeatPhaseSeconds: r3(hbWallS),
        netfenceCpCpuCoresDuringHeartbeats: r3(hbCpuS / hbWallS),
        reloadFanOutMs: Math.round(reloadMs),
        reloadBulkUpdates: args.daemons * 3,
        targetCpuCores: 1,
        note: "reload fan-out includes the 200 ms file-watch debounce",
      },
    };
  } finally {
    for (const s of sims) s.call.cancel();
    for (const c of channels) c.close();
    if (cp && cp.exitCode === null) {
      const exited = new Promise((r) => cp!.once("exit", r));
      cp.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (cp.exitCode === null) cp.kill("SIGKILL");
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The TCP port a process listens on, from /proc/net/tcp (its socket inodes in /proc/<pid>/fd). */
async function findListeningPort(pid: number, ms: number): Promise<number> {
  const { readdirSync, readlinkSync } = await import("node:fs");
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const inodes = new Set<string>();
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const link = (() => { try { return readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return ""; } })();
        const m = /^socket:\[(\d+)\]$/.exec(link);
        if (m) inodes.add(m[1]!);
      }
    } catch {
      throw new Error(`netfence-cp (pid ${pid}) exited early`);
    }
    for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && f[3] === "0A" && inodes.has(f[9]!)) return parseInt(f[1]!.split(":")[1]!, 16);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("netfence-cp did not start listening");
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = new Date().toISOString();
  // Other work on the machine skews tail latencies; record how busy it was.
  const loadAvgAtStart = os.loadavg().map(r3);
  const path1 = await commandPath(args);
  const pathKernel = await kernelPath(args);
  const path3 = await manyDaemons(args);
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim() ?? "unknown";
  const result = {
    benchmark: "control-plane",
    started,
    machine: { nproc: os.availableParallelism(), kernel: os.release(), cpuModel, node: process.version, loadAvgAtStart, loadAvgAtEnd: os.loadavg().map(r3) },
    ...path1,
    ...pathKernel,
    ...path3,
  };
  mkdirSync(path.dirname(args.out), { recursive: true });
  writeFileSync(args.out, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

await main();
