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
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pino from "pino";
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

import { percentile, r3, until } from "./bench-util.js";
import { manyDaemons } from "./many-daemons.js";

/** In-memory host: applies instantly, so the figures are the control-plane path itself. */
class MemoryHost implements ControlPlaneHost {
  applied = 0;
  readonly views: AttachmentView[] = [{
    id: "bench-att", target: "veth-bench", type: "interface", mode: "allowlist", audit: false, dnsMode: "disabled",
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

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = new Date().toISOString();
  // Other work on the machine skews tail latencies; record how busy it was.
  const loadAvgAtStart = os.loadavg().map(r3);
  const path1 = await commandPath(args);
  const pathKernel = await kernelPath(args);
  const path3 = await manyDaemons({ daemons: args.daemons, heartbeatSeconds: args.heartbeatSeconds });
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
