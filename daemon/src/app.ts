import os from "node:os";
import type { Logger } from "pino";
import type { DaemonConfig } from "./config.js";
import type { Filter } from "./datapath/filter.js";
import { KernelFilter } from "./datapath/kernel-filter.js";
import { AttachmentManager } from "./attachments/manager.js";
import { AttachmentCore } from "./attachments/attachment-core.js";
import { CommandApplier } from "./attachments/command-applier.js";
import { HitsTracker } from "./attachments/hits-tracker.js";
import { AttachmentStats } from "./attachments/attachment-stats.js";
import { controlPlaneHost } from "./attachments/control-plane-host-adapter.js";
import { NO_CONTROL_PLANE_PROXY } from "./dns/dns-proxy.js";
import { MetricCounters } from "./metric-counters.js";
import { LocalPolicySource } from "./attachments/local-policy-source.js";
import { TargetWatcher } from "./attachments/target-watcher.js";
import { HostAddressGate } from "./attachments/host-address-gate.js";
import { findCgroup2Mount } from "./attachments/target.js";
import type { DnsServerFactory } from "./dns/dns-servers.js";
import { createDnsServerFactory } from "./dns/dns-server-factory.js";
import { ControlPlaneClient } from "./control-plane/connection.js";
import { FileStateStore, MemoryStateStore, type StateStore } from "./store/state-store.js";
import { derivedDaemonId } from "./store/daemon-id.js";
import { DaemonServiceImpl } from "./rpc/daemon-service.js";
import { DaemonServer } from "./rpc/daemon-server.js";
import { DaemonMetrics } from "./metrics.js";
import { EventForwarder } from "./event-forwarder.js";
import { TamperForwarder } from "./tamper-forwarder.js";
import { NetfenceError } from "@netfence/proto/errors";
import { flushAttachments, removeHostPins } from "./apply/flush.js";
import { PolicyApplier } from "./apply/apply-policy.js";
import { managementProtected } from "./apply/management.js";
import { netfenceVersion } from "./version.js";
import { HostAddresses } from "./dns/host-addresses.js";
import { DnsEventReporter } from "./dns/dns-events.js";
import { LearnedGuard } from "./plan/learned-guard.js";
import { mergeAsync } from "./merged-events.js";
import { Explainer } from "./explain/explainer.js";
import { PolicyHistory } from "./history/policy-history.js";
import { MapUsage } from "./map-usage.js";
import { OwnerNames } from "./policy/principals.js";
import { withOwnerNames } from "./attachments/owner-events.js";
import { BlockedOwners } from "./attachments/blocked-owners.js";

/**
 * The composition root: builds the parts in order (filter → store → attachment core → control
 * plane client → DNS server factory → manager → watcher → metrics → DaemonService), each from
 * finished objects (no part is bound after construction), and stops them in reverse. Stopping never detaches:
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
  filter: Filter | undefined = undefined;
  controlPlane: ControlPlaneClient | null = null;
  /** Blocked attempts by socket owner per attachment (issue 15; `status --rules`). */
  readonly blockedOwners = new BlockedOwners(1000, (id) => this.manager?.metadataOf(id) !== undefined);
  private notifySocket: string | null = null;
  private stopping = false;
  /** Set by `netfenced flush`: the host-wide pins are removed once the loader has exited. */
  private flushed = false;
  private requestStop!: (reason: string) => void;
  /** Resolves when the daemon asks to be stopped (after `netfenced flush`); main.ts races it with the signals. */
  readonly stopRequested = new Promise<string>((resolve) => (this.requestStop = resolve));

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
    await this.setProtected(filter);
    // Before any DNS server binds (the manager's start re-creates them).
    await this.installPortGuard(filter, cgroupRoot);

    const store: StateStore = config.dataDir !== null ? new FileStateStore(config.dataDir) : new MemoryStateStore();
    // Built in dependency order, each from finished objects: the pushed metrics first, then the
    // attachment core (its learned-address writer is the DNS servers' sink), the daemon id (from
    // the store), the control-plane client (its host is an adapter over the core's parts), the DNS
    // server factory, the manager; the gauges last, read from all of them.
    const counters = new MetricCounters();
    // The audit trail (history.journal beside the state store); closed after the manager stops,
    // so the last changes and the DNS aggregates of the current minute are written.
    const history = await PolicyHistory.open({
      dir: config.dataDir,
      maxEntries: config.history.maxEntries,
      maxAgeMs: config.history.maxAgeMs,
      logger: logger.child({ component: "history" }),
      onRecord: (e) => counters.policyChange(e.source, e.result),
    });
    this.onStop("history", () => history.close());
    // DNS tenant isolation and the rebinding guard share one view of the host's addresses; DNS
    // events join the kernel's packet events on the daemon's event stream.
    const hostAddresses = new HostAddresses();
    // The TTL collection's host-address check reads them again only after rtnetlink address events.
    let targetWatcher: TargetWatcher | null = null;
    const hostAddressGate = new HostAddressGate(() => hostAddresses.version, () => targetWatcher?.linkEventsLive ?? false);
    const dnsEvents = new DnsEventReporter((e) => counters.dnsEvent(e.reason, e.rule));
    this.onStop("DNS events", () => dnsEvents.close());
    // Issue 15: events name the socket owner (PacketEvent.user); blocked attempts are counted per owner.
    const ownerNames = new OwnerNames();
    const events = () => mergeAsync(withOwnerNames(filter.events(), ownerNames), dnsEvents.events());
    const ownerCounting = this.blockedOwners.countFrom(events());
    this.onStop("blocked-owner counts", () => ownerCounting.stop());
    const learnedGuard = new LearnedGuard({
      protectedDeny: config.protected.filter((p) => p.action === "deny").map((p) => p.cidr),
      hostAddresses: () => hostAddresses.addressKeys(),
    });
    const core = new AttachmentCore({
      filter,
      store,
      logger,
      dns: config.dns,
      learnedGuard,
      history,
      onCommandTimings: (planMs, kernelMs) => counters.commandPhases(planMs, kernelMs),
      onLearnedRefused: (r) => {
        counters.learnedAddressRefused(r.reason, r.count);
        dnsEvents.report({
          attachmentId: r.attachmentId, reason: r.reason === "quota" ? "dns-quota-learned" : "dns-rebind-guard",
          src: "", srcPort: 0, dst: r.address, dstPort: 0, protocol: 0, rule: r.name,
        });
      },
    });
    await core.persistence.load(derivedDaemonId());
    const commands = new CommandApplier(core);
    const attachmentStats = new AttachmentStats(core.registry, filter, core.log);
    const controlPlane =
      config.controlPlane.url === null
        ? null
        : new ControlPlaneClient({
            url: config.controlPlane.url,
            tls: config.controlPlane.tls,
            token: config.controlPlane.token,
            daemonId: core.persistence.daemonId,
            hostname: os.hostname(),
            metadata: { ...config.metadata },
            heartbeatIntervalMs: config.controlPlane.heartbeatIntervalMs,
            subscribeAckTimeoutMs: config.controlPlane.subscribeAckTimeoutMs,
            initialPolicy: { ...config.defaultPolicy, audit: false }, // audit is for standalone daemons only
            host: controlPlaneHost(core.registry, commands, attachmentStats, core.history, new HitsTracker(core.registry, filter, core.log)),
            logger,
            onCommandOutcome: (kind, applied, ms) => counters.commandOutcome(kind, applied, ms),
          });
    this.controlPlane = controlPlane;
    const tamperForwarder = controlPlane === null ? null : new TamperForwarder((r) => controlPlane.publishTamper(r));
    this.onStop("tamper forwarder", () => tamperForwarder?.stop());
    const dnsServers =
      overrides.dnsServers ??
      createDnsServerFactory({
        defaultUpstreams: [config.dns.upstream],
        learned: core.learned,
        proxy: controlPlane ?? NO_CONTROL_PLANE_PROXY,
        minTtlSeconds: config.dns.minTtlSeconds,
        answerCacheEntries: config.dns.answerCacheEntries,
        logger,
        hostAddresses,
        report: dnsEvents.report,
        onOutcome: (outcome, n) => counters.dnsOutcome(outcome, n),
      });
    const manager = new AttachmentManager({
      core,
      commands,
      filter,
      policySource: controlPlane ?? new LocalPolicySource(config.defaultPolicy, logger),
      store,
      dnsServers,
      logger,
      dns: config.dns,
      cgroupRoot,
      fallbackDaemonId: derivedDaemonId(),
      restore: config.restore,
      attachMethod: config.bpf.attachMethod,
      // Watched by the integrity check; not when a test put its own filter in.
      ...(overrides.filter === undefined ? { pinRoot: config.bpf.pinRoot } : {}),
      hostAddressesVersion: () => hostAddressGate.version(),
      onTamper: (r) => {
        counters.tamperDetected(r.kind);
        tamperForwarder?.report(r);
      },
    });
    this.manager = manager;
    // Registered before start: a start that fails half-way (e.g. the state cannot be saved) must
    // still stop the DNS servers it already started.
    this.onStop("attachments", () => manager.stop());
    const report = await manager.start();
    logger.info({ daemonId: manager.daemonId, ...report }, "state restored");
    for (const warning of manager.warnings()) logger.error({ warning }, "start-up problem (see `netfenced status`)");

    const watcher = new TargetWatcher(() => manager.watchedTargets(), (id) => manager.targetGone(id), logger, { onAddressChange: () => hostAddressGate.changed() });
    targetWatcher = watcher;
    watcher.start();
    this.onStop("target watcher", () => watcher.stop());

    let eventsForwarder: EventForwarder | null = null;
    if (controlPlane !== null) {
      controlPlane.start();
      this.onStop("control plane", () => controlPlane.stop());
      const forwarder = new EventForwarder(events(), controlPlane, { metadataOf: (id) => manager.metadataOf(id), onDropped: (n) => counters.eventLost(n) });
      eventsForwarder = forwarder;
      forwarder.start();
      this.onStop("event forwarder", () => forwarder.stop());
    }

    const mapUsage = new MapUsage({ ids: () => manager.list().map((a) => a.id), tables: (id) => filter.exactTables!(id) });
    const metrics = new DaemonMetrics(
      {
        stats: () => manager.stats(),
        attachmentCount: () => manager.size,
        queueDepth: () => manager.queueDepth,
        controlPlaneState: () => controlPlane?.state() ?? "none",
        integrityRestores: () => manager.integrityRestores,
        orphans: () => manager.orphans().length,
        dnsStates: () => manager.dnsStates(),
        ...(filter.exactTables !== undefined ? { mapUsage: () => mapUsage.read() } : {}),
        eventsForwardDropped: () => eventsForwarder?.dropped ?? 0,
      },
      counters,
    );
    if (config.metrics.listen !== null) {
      await metrics.listen(config.metrics.listen, logger);
      this.onStop("metrics", () => metrics.close());
    }

    const applier = new PolicyApplier({
      host: manager, cgroupRoot, management: config.management, logger: logger.child({ component: "apply" }),
      record: (r) => history.record(r),
    });
    const explainer = new Explainer({ filter, record: (id) => core.registry.records.get(id), now: core.now });
    serviceReady(
      new DaemonServiceImpl({
        registry: manager,
        version,
        hostname: os.hostname(),
        controlPlane,
        events,
        metadataOf: (id) => manager.metadataOf(id),
        tcAttachMethod: () => filter.tcAttachMethod(),
        explain: (q) => explainer.explain(q),
        history,
        blockedOwners: (id) => this.blockedOwners.forAttachment(id),
        applyPolicy: (file, content, dryRun) => applier.apply(file, content, dryRun),
        flush: async () => {
          const r = await applier.flush(() => flushAttachments({ manager, filter }));
          this.flushed = true;
          // After the response is on its way; stop() gives running calls 500 ms.
          setTimeout(() => this.requestStop("flush"), 50);
          return r;
        },
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


  /**
   * The host-wide protected sets: config `protected`/`protected_deny` plus the management entries
   * (apply/management.ts). A loader without management "from" entries (NF_PROT_FROM, issue 15)
   * refuses them: the others are installed and a start-up warning says so.
   */
  private async setProtected(filter: Filter): Promise<void> {
    const mgmt = managementProtected(this.config.management);
    try {
      await filter.setProtected([...this.config.protected, ...mgmt]);
    } catch (err) {
      if (!mgmt.some((e) => e.from === true)) throw err;
      this.logger.error({ err }, "the loader refused management \"from\" entries; management access is protected towards the management networks only");
      await filter.setProtected([...this.config.protected, ...mgmt.filter((e) => e.from !== true)]);
    }
  }

  /** sd_notify through the loader child; best effort (a stop must go on without it). */
  private async sdNotify(message: string): Promise<void> {
    const socket = this.notifySocket;
    const filter = this.filter;
    if (socket === null || filter === undefined) return;
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
    this.filter?.stopSupervising();
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
    if (this.flushed) removeHostPins(this.config.bpf.pinRoot, this.logger);
    this.logger.info(this.flushed ? "netfenced stopped after flush: nothing of Netfence is left in the kernel" : "netfenced stopped; pinned filters keep enforcing");
  }
}
