import pino from "pino";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { AttachmentManager } from "../../../daemon/src/attachments/manager.js";
import { findCgroup2Mount } from "../../../daemon/src/attachments/target.js";
import { MemoryStateStore } from "../../../daemon/src/store/state-store.js";
import { createDnsServerFactory } from "../../../daemon/src/dns/dns-server-factory.js";
import { ControlPlaneClient } from "../../../daemon/src/control-plane/connection.js";
import type { ControlPlaneHost } from "../../../daemon/src/control-plane/control-plane-host.js";
import type { LearnedAddressSink } from "../../../daemon/src/dns/learned-sink.js";
import { EventForwarder } from "../../../daemon/src/event-forwarder.js";

/**
 * The daemon's control-plane half composed for kernel tests: AttachmentManager (real
 * KernelFilter) + ControlPlaneClient, wired through the narrow seams the composition root uses.
 */
export interface KernelDaemon {
  readonly manager: AttachmentManager;
  readonly client: ControlPlaneClient;
  stop(): Promise<void>;
}

export async function startKernelDaemon(opts: {
  filter: KernelFilter;
  controlPlaneUrl: string;
  daemonId: string;
  subscribeAckTimeoutMs: number;
  dnsPorts: { min: number; max: number };
  heartbeatIntervalMs?: number;
  /** Forward the kernel's packet events to the control plane when it asks (as app.ts does). */
  forwardEvents?: { intervalMs: number };
}): Promise<KernelDaemon> {
  const silent = pino({ level: "silent" });
  let mgr: AttachmentManager | null = null;
  const host: ControlPlaneHost = {
    attachments: () => mgr!.attachments(),
    applyCommand: (id, cmd, origin) => mgr!.applyCommand(id, cmd, origin),
    stats: () => mgr!.stats(),
  };
  const learned: LearnedAddressSink = { write: (id, items) => mgr!.learnedSink.write(id, items), epoch: (id) => mgr!.learnedSink.epoch(id) };
  let cpClient: ControlPlaneClient | null = null;
  const client = new ControlPlaneClient({
    url: opts.controlPlaneUrl, daemonId: opts.daemonId, hostname: "sandbox", metadata: {},
    heartbeatIntervalMs: opts.heartbeatIntervalMs ?? 60_000, subscribeAckTimeoutMs: opts.subscribeAckTimeoutMs,
    host, logger: silent, backoff: { baseMs: 50, capMs: 300 },
  });
  const manager = new AttachmentManager({
    filter: opts.filter,
    policySource: client,
    store: new MemoryStateStore(),
    dnsServers: createDnsServerFactory({
      defaultUpstreams: ["127.0.0.1:53"],
      learned,
      proxy: { queryDns: (id, domain, type) => cpClient!.queryDns(id, domain, type) },
      logger: silent,
    }),
    logger: silent,
    dns: { listenAddr: "127.0.0.1", portMin: opts.dnsPorts.min, portMax: opts.dnsPorts.max },
    cgroupRoot: findCgroup2Mount(),
    gcIntervalMs: 0,
  });
  mgr = manager;
  cpClient = client;
  await manager.start();
  client.start();
  const forwarder = opts.forwardEvents === undefined
    ? null
    : new EventForwarder(opts.filter.events(), client, { intervalMs: opts.forwardEvents.intervalMs, metadataOf: (id) => manager.metadataOf(id) });
  forwarder?.start();
  return {
    manager,
    client,
    async stop() {
      forwarder?.stop();
      client.stop();
      for (const a of manager.list()) await manager.detach(a.id).catch(() => undefined);
      await manager.stop().catch(() => undefined);
    },
  };
}
