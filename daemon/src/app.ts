import os from "node:os";
import type { Logger } from "pino";
import type { DaemonConfig } from "./config.js";
import type { Filter } from "./datapath/filter.js";
import { KernelFilter } from "./datapath/kernel-filter.js";
import { AttachmentManager } from "./attachments/manager.js";
import { LatePolicySource } from "./attachments/late-policy-source.js";
import { LocalPolicySource } from "./attachments/local-policy-source.js";
import { TargetWatcher } from "./attachments/target-watcher.js";
import { findCgroup2Mount } from "./attachments/target.js";
import type { DnsServerFactory } from "./attachments/dns-server-factory.js";
import { createDnsServerFactory } from "./dns/dns-server-factory.js";
import { ControlPlaneClient } from "./control-plane/connection.js";
import { FileStateStore, MemoryStateStore, type StateStore } from "./store/state-store.js";
import { derivedDaemonId } from "./store/daemon-id.js";
import { DaemonServiceImpl } from "./rpc/daemon-service.js";
import { DaemonServer } from "./rpc/daemon-server.js";
import { DaemonMetrics } from "./metrics.js";
import { EventForwarder } from "./event-forwarder.js";
import { NetfenceError } from "@netfence/proto/errors";
import { netfenceVersion } from "./version.js";
import { HostAddresses } from "./dns/host-addresses.js";
import { DnsEventReporter } from "./dns/dns-events.js";
import { LearnedGuard } from "./plan/learned-guard.js";
import { mergeAsync } from "./merged-events.js";

/**
 * The composition root: builds the parts in order (filter → store → manager → watcher →
 * control plane → metrics → DaemonService) and stops them in reverse. Stopping never detaches:
 * pinned filters keep enforcing until the next daemon re-adopts them.
 */

export interface AppOverrides {
  /** Tests inject an in-memory Filter / DNS factory; the daemon itself always uses the kernel. */
  readonly filter?: Filter;
  readonly dnsServers?: DnsServerFactory;
  /** $NOTIFY_SOCKET of a Type=notify systemd service: READY=1 once serving, STOPPING=1 when stopping. */
  readonly notifySocket?: string | null;
}

export class App {
  private readonly stops: { name: string; stop: () => Promise<void> | void }[] = [];
  manager!: AttachmentManager;
  private server: DaemonServer | null = null;
  filter!: Filter;
  controlPlane: ControlPlaneClient | null = null;
  private notifySocket: string | null = null;
  private stopping = false;

  private constructor(
    readonly config: DaemonConfig,
    private readonly logger: Logger,
  ) {}

  /**
   * Builds and starts everything. On any failure, everything already taken (DaemonService socket,
   * loader child, DNS sockets, timers, metrics port) is released before the error is rethrown.
   */
  static async start(config: DaemonConfig, logger: Logger, overrides: AppOverrides = {}): Promise<App> {
    const app = new App(config, logger);
    app.notifySocket = overrides.notifySocket ?? null;
    try {
      await app.build(overrides);
    } catch (err) {
      await app.stop().catch(() => undefined);
      throw err;
    }
    return app;
  }

  private onStop(name: string, stop: () => Promise<void> | void): void {
    this.stops.push({ name, stop });
  }

  private async build(overrides: AppOverrides): Promise<void> {
    const { config, logger } = this;
    const version = netfenceVersion();
    logger.info({ version, socket: config.socket, dataDir: config.dataDir, controlPlane: config.controlPlane.url }, "netfenced starting");

    // Bind the socket first: a second daemon on the same socket is refused before it touches any pin.
    let serviceReady!: (impl: DaemonServiceImpl) => void;
    let serviceFailed!: (err: unknown) => void;
    const service = new Promise<DaemonServiceImpl>((resolve, reject) => {
      serviceReady = resolve;
      serviceFailed = reject;
    });
    const server = new DaemonServer(config.socket, service, logger);
    await server.start();
    this.server = server;
    this.onStop("daemon service", () => serviceFailed(new NetfenceError("UNAVAILABLE", "the daemon is shutting down")));

    const cgroupRoot = config.cgroupRoot ?? findCgroup2Mount();
    if (cgroupRoot === null) logger.warn("no cgroup2 mount found; cgroup attachments are unavailable");

    const filter =
      overrides.filter ?? (await KernelFilter.start({ pinRoot: config.bpf.pinRoot, loaderPath: config.bpf.loaderPath ?? undefined, logger }));
    this.filter = filter;
    this.onStop("filter", () => filter.close());
    await filter.setProtected(config.protected);
    // Before any DNS server binds (the manager's start re-creates them).
    await this.installPortGuard(filter, cgroupRoot);

    const store: StateStore = config.dataDir !== null ? new FileStateStore(config.dataDir) : new MemoryStateStore();
    const policySource = new LatePolicySource();
    let manager: AttachmentManager | null = null;
    let controlPlane: ControlPlaneClient | null = null;
    // DNS tenant isolation and the rebinding guard share one view of the host's addresses; DNS
    // events join the kernel's packet events on the daemon's event stream.
    let metrics: DaemonMetrics | null = null;
    const hostAddresses = new HostAddresses();
    const dnsEvents = new DnsEventReporter((e) => metrics?.dnsEvent(e.reason));
    this.onStop("DNS events", () => dnsEvents.close());
    const events = () => mergeAsync(filter.events(), dnsEvents.events());
    const learnedGuard = new LearnedGuard({
      protectedDeny: config.protected.filter((p) => p.action === "deny").map((p) => p.cidr),
      hostAddresses: () => hostAddresses.addressKeys(),
    });
    const dnsServers =
      overrides.dnsServers ??
      createDnsServerFactory({
        defaultUpstreams: [config.dns.upstream],
        learned: {
          write: (id, items) => (manager === null ? Promise.reject(new NetfenceError("UNAVAILABLE", "starting")) : manager.learnedSink.write(id, items)),
          epoch: (id) => manager?.learnedSink.epoch(id) ?? -1,
        },
        proxy: {
          queryDns: (id, domain, type) =>
            controlPlane === null
              ? Promise.reject(new NetfenceError("UNAVAILABLE", "DNS proxy mode needs a control plane (control_plane.url)"))
              : controlPlane.queryDns(id, domain, type),
        },
        minTtlSeconds: config.dns.minTtlSeconds,
        logger,
        hostAddresses,
        report: dnsEvents.report,
      });
    manager = new AttachmentManager({
      filter,
      policySource,
      store,
      dnsServers,
      logger,
      dns: config.dns,
      cgroupRoot,
      fallbackDaemonId: derivedDaemonId(),
      restore: config.restore,
      attachMethod: config.bpf.attachMethod,
      learnedGuard,
      hostAddressesVersion: () => hostAddresses.version,
      onLearnedRefused: (r) => {
        metrics?.learnedAddressRefused(r.reason, r.count);
        dnsEvents.report({
          attachmentId: r.attachmentId, reason: r.reason === "quota" ? "dns-quota-learned" : "dns-rebind-guard",
          src: "", srcPort: 0, dst: r.address, dstPort: 0, protocol: 0, rule: r.name,
        });
      },
    });
    this.manager = manager;
    // Registered before start: a start that fails half-way (e.g. the state cannot be saved) must
    // still stop the DNS servers it already started.
    this.onStop("attachments", () => manager!.stop());
    const report = await manager.start();
    logger.info({ daemonId: manager.daemonId, ...report }, "state restored");
    for (const warning of manager.warnings()) logger.error({ warning }, "start-up problem (see `netfenced status`)");

    const watcher = new TargetWatcher(() => manager!.watchedTargets(), (id) => manager!.targetGone(id), logger);
    watcher.start();
    this.onStop("target watcher", () => watcher.stop());

    if (config.controlPlane.url !== null) {
      controlPlane = new ControlPlaneClient({
        url: config.controlPlane.url,
        tls: config.controlPlane.tls,
        token: config.controlPlane.token,
        daemonId: manager.daemonId,
        hostname: os.hostname(),
        metadata: { ...config.metadata },
        heartbeatIntervalMs: config.controlPlane.heartbeatIntervalMs,
        subscribeAckTimeoutMs: config.controlPlane.subscribeAckTimeoutMs,
        initialPolicy: { ...config.defaultPolicy, audit: false }, // audit is for standalone daemons only
        host: manager,
        logger,
        onCommandOutcome: (kind, applied, ms) => metrics?.commandOutcome(kind, applied, ms),
      });
      this.controlPlane = controlPlane;
      policySource.set(controlPlane);
      controlPlane.start();
      const cp = controlPlane;
      this.onStop("control plane", () => cp.stop());
      const forwarder = new EventForwarder(events(), (batch) => cp.publishEvents(batch));
      forwarder.start();
      this.onStop("event forwarder", () => forwarder.stop());
    } else {
      policySource.set(new LocalPolicySource(config.defaultPolicy, logger));
    }

    metrics = new DaemonMetrics({
      stats: () => manager!.stats(),
      attachmentCount: () => manager!.size,
      queueDepth: () => manager!.queueDepth,
      controlPlaneState: () => controlPlane?.state() ?? "none",
      integrityRestores: () => manager!.integrityRestores,
      orphans: () => manager!.orphans().length,
      dnsStates: () => manager!.dnsStates(),
    });
    if (config.metrics.listen !== null) {
      await metrics.listen(config.metrics.listen, logger);
      const m = metrics;
      this.onStop("metrics", () => m.close());
    }

    serviceReady(
      new DaemonServiceImpl({
        registry: manager,
        version,
        hostname: os.hostname(),
        controlPlane,
        events,
        tcAttachMethod: () => (filter instanceof KernelFilter && filter.hello !== null ? (filter.hello.tcx ? "tcx" : "clsact") : ""),
      }),
    );
    logger.info({ daemonId: manager.daemonId, attachments: manager.size, orphans: manager.orphans().length }, "netfenced ready");
    await this.sdNotify("READY=1");
  }

  /**
   * The DNS port guard (dns.port_guard): bind() to the DNS port range is refused to every other
   * uid in dns.port_guard_cgroup (default: the whole cgroup2 hierarchy). Pinned, so it also holds
   * while the daemon restarts; turned off, a guard left by an earlier run is removed.
   */
  private async installPortGuard(filter: Filter, cgroupRoot: string | null): Promise<void> {
    const { dns } = this.config;
    if (!dns.portGuard) {
      await filter.removePortGuard();
      this.logger.warn("dns.port_guard is off: another local user can bind a DNS port before the daemon does");
      return;
    }
    const cgroup = dns.portGuardCgroup ?? cgroupRoot;
    if (cgroup === null) {
      throw new NetfenceError("FAILED_PRECONDITION", "dns.port_guard needs a cgroup2 mount and none was found: set dns.port_guard_cgroup, or dns.port_guard: false");
    }
    const uid = process.getuid?.() ?? 0;
    try {
      await filter.setPortGuard({ cgroupPath: cgroup, portMin: dns.portMin, portMax: dns.portMax, uid });
    } catch (err) {
      const e = NetfenceError.from(err);
      throw new NetfenceError(e.code, `installing the DNS port guard (dns.port_guard) on ${cgroup} failed: ${e.message}; set dns.port_guard: false to run without it`, {
        cause: err,
      });
    }
    this.logger.info({ cgroup, portMin: dns.portMin, portMax: dns.portMax, uid }, "DNS port guard active: only this uid may bind the DNS port range");
  }


  /** sd_notify through the loader child; best effort (a stop must go on without it). */
  private async sdNotify(message: string): Promise<void> {
    const socket = this.notifySocket;
    const filter = this.filter;
    if (socket === null || !(filter instanceof KernelFilter)) return;
    try {
      await filter.notify(socket, message);
      this.logger.debug({ notifySocket: socket, message }, "sd_notify sent");
    } catch (err) {
      this.logger.warn({ err, notifySocket: socket, message }, "sd_notify failed");
    }
  }

  /**
   * The synchronous first step of a stop, safe to call from a signal handler: from now on a
   * loader child that exits (SIGTERM to the whole process group or unit) is not restarted.
   */
  beginStop(): void {
    if (this.filter instanceof KernelFilter) this.filter.stopSupervising();
  }

  /**
   * Stops everything in reverse order of start; pinned filters keep enforcing. The control-plane
   * stream is closed without Unsubscribed events (the attachments stay), DNS servers stop, the
   * state is saved. Bounded: running DaemonService calls get 500 ms before they are cut.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.beginStop();
    await this.sdNotify("STOPPING=1");
    // Stop taking calls first, then the rest in reverse order of start.
    const server = this.server;
    this.server = null;
    await server?.stop(500).catch((err: unknown) => this.logger.warn({ err }, "stopping the DaemonService failed"));
    while (this.stops.length > 0) {
      const { name, stop } = this.stops.pop()!;
      try {
        await stop();
      } catch (err) {
        this.logger.warn({ err, part: name }, "stop failed");
      }
    }
    this.logger.info("netfenced stopped; pinned filters keep enforcing");
  }
}
