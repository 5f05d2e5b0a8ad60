import type { Logger } from "pino";
import type { AttachMethodPreference, Filter } from "../datapath/filter.js";
import type { AttachmentPolicy, PolicyCommand } from "../policy/policy.js";
import type { LearnedAddressSink } from "../dns/learned-sink.js";
import type { LearnedGuard } from "../plan/learned-guard.js";
import type { StateStore } from "../store/state-store.js";
import type { StoreSnapshot } from "../store/snapshot.js";
import type { AttachmentStatsView, AttachmentView } from "./attachment-view.js";
import type { PolicySource } from "./policy-source.js";
import type { DnsServerFactory } from "../dns/dns-servers.js";
import type { OrphanInfo } from "./orphan.js";
import type { LearnedRefusalReport } from "./learned-writer.js";
import type { DnsStateView, WatchedTarget } from "./registry.js";
import { AttachmentCore } from "./attachment-core.js";
import { AttachmentResources, type AttachmentDnsConfig } from "./attachment-resources.js";
import { AttachFlow, type AttachInput } from "./attach-flow.js";
import { CommandApplier } from "./command-applier.js";
import { Maintenance } from "./maintenance.js";
import { TamperWatch, type TamperWatchOptions } from "./tamper-watch.js";
import { OrphanOps } from "./orphan-ops.js";
import { AttachmentStats } from "./attachment-stats.js";
import { HitsTracker, type HitsDelta } from "./hits-tracker.js";
import { buildRulesView, type RulesView } from "./rules-view.js";
import { restoreAttachments, type StartReport } from "./startup.js";
import type { CommandOrigin, HistorySource } from "../history/history-entry.js";
import { NetfenceError } from "@netfence/proto/errors";

export type { AttachInput } from "./attach-flow.js";
export type { StartReport } from "./startup.js";
export type { WatchedTarget } from "./registry.js";

/**
 * The attachment manager: THE single writer of kernel state, composed of one part per concept,
 * all sharing one AttachmentCore (the OpQueue every kernel-changing operation runs through, the
 * registry, persistence, the learned-address writer):
 *
 *   registry.ts            what the daemon holds (records, reservations, unadopted, orphans)
 *   attach-flow.ts         attach / detach orchestration
 *   command-applier.ts     policy commands → plan → one kernel operation
 *   learned-writer.ts      DNS-learned addresses: write, re-check, expiry (the sink DNS servers use)
 *   maintenance.ts         TTL collection and integrity timers
 *   tamper-watch.ts        tamper detection and repair (attach point, pins, map contents)
 *   persistence.ts         the snapshot in the state store
 *   orphan-ops.ts          orphans: adopt, detach
 *   startup.ts             the start-up restore
 *
 * This class only wires them and is the surface the daemon's services use.
 */

export interface ManagerOptions extends TamperWatchOptions {
  readonly filter: Filter;
  readonly policySource: PolicySource;
  readonly store: StateStore;
  readonly dnsServers: DnsServerFactory;
  readonly logger: Logger;
  readonly dns: AttachmentDnsConfig;
  /**
   * The shared core when the caller built it first (app.ts: its learned-address writer is the DNS
   * servers' sink); absent: built here from the options below.
   */
  readonly core?: AttachmentCore;
  /** The command applier over that core when the caller built it first (the control plane's host). */
  readonly commands?: CommandApplier;
  /** The cgroup2 mount (or configured override); null when there is none. */
  readonly cgroupRoot: string | null;
  /** Where interface link types are read; default /sys/class/net (unit tests use a fake one). */
  readonly netClassDir?: string;
  /**
   * The DNS rebinding guard applied to every learned address (learned-guard.ts); absent: none
   * (unit tests of other parts). `hostAddressesVersion` changes when the host's addresses do:
   * learned addresses are then checked again.
   */
  readonly learnedGuard?: LearnedGuard;
  readonly hostAddressesVersion?: () => number;
  /** Every learned address refused or removed by the guard or the quota (metrics, events). */
  readonly onLearnedRefused?: (report: LearnedRefusalReport) => void;
  /** Used when the store has no daemon id yet (memory store: derived from the machine). */
  readonly fallbackDaemonId?: string;
  readonly now?: () => number;
  readonly gcIntervalMs?: number;
  /** Period of the integrity check (pins removed by someone else); 0 = off. Default 2000. */
  readonly integrityIntervalMs?: number;
  /** The filter's pin root, watched by the integrity check (maintenance.ts); absent: it polls. */
  readonly pinRoot?: string;
  readonly newId?: () => string;
  /** Re-create stored attachments whose pins are gone but whose target is there (a reboot). Default true. */
  readonly restore?: boolean;
  /** How interface filters are attached (config `bpf.attach_method`); default "auto". */
  readonly attachMethod?: AttachMethodPreference;
}

export class AttachmentManager {
  private readonly core: AttachmentCore;
  private readonly flow: AttachFlow;
  private readonly commands: CommandApplier;
  private readonly maintenance: Maintenance;
  private readonly tamper: TamperWatch;
  private readonly orphanOps: OrphanOps;
  private readonly statsReader: AttachmentStats;
  private readonly hitsTracker: HitsTracker;
  private readonly resources: AttachmentResources;
  /** Set by flush(): attach and adopt refuse from then on. */
  private flushing = false;
  private readonly inFlight = new Set<Promise<AttachmentView>>();
  private startWarnings: string[] = [];

  constructor(private readonly opts: ManagerOptions) {
    this.core = opts.core ?? new AttachmentCore(opts);
    const { registry, log } = this.core;
    this.resources = new AttachmentResources(opts.dns, opts.dnsServers, registry, log, opts.attachMethod);
    this.flow = new AttachFlow(this.core, this.resources, opts.policySource, { cgroupRoot: opts.cgroupRoot, netClassDir: opts.netClassDir });
    this.commands = opts.commands ?? new CommandApplier(this.core);
    this.tamper = new TamperWatch(this.core, this.resources, opts);
    this.maintenance = new Maintenance(this.core, this.resources, opts, this.tamper);
    this.orphanOps = new OrphanOps(this.core, this.resources, opts.policySource);
    this.statsReader = new AttachmentStats(registry, opts.filter, log);
    this.hitsTracker = new HitsTracker(registry, opts.filter, log);
  }

  get daemonId(): string {
    return this.core.persistence.daemonId;
  }

  get queueDepth(): number {
    return this.core.queue.depth;
  }

  /** Tampering reports since start (tamper-watch.ts). */
  get tamperDetected(): number {
    return this.tamper.detected;
  }

  /** Attachments restored by the integrity check since start (metrics, tests). */
  get integrityRestores(): number {
    return this.maintenance.integrityRestores;
  }

  /** Loads the store, re-adopts pinned attachments, cleans orphans, starts the timers. */
  async start(): Promise<StartReport> {
    this.maintenance.noteHostVersion();
    const { report, warnings } = await this.core.queue.run("restore", () =>
      restoreAttachments(this.core, this.resources, this.opts.policySource, this.opts, this.tamper),
    );
    this.startWarnings = warnings;
    this.maintenance.start();
    this.tamper.start();
    return report;
  }

  // ---------------------------------------------------------------- attach / detach / commands

  attach(input: AttachInput): Promise<AttachmentView> {
    return this.creating(() => this.flow.attach(input));
  }

  /** `source`: who it is recorded as in the audit trail (default the local API). */
  detach(id: string, source?: HistorySource): Promise<void> {
    return this.flow.detach(id, source);
  }

  /** The target watcher saw the interface/cgroup vanish. */
  targetGone(id: string): Promise<void> {
    return this.flow.targetGone(id);
  }

  /** Applies one command; recorded in the audit trail as coming from `origin` (default: the local API, source "cli"). */
  applyCommand(attachmentId: string, command: PolicyCommand, origin?: CommandOrigin): Promise<void> {
    return this.commands.apply(attachmentId, command, origin);
  }

  /**
   * Where the DNS servers write the addresses their answers produced (dns/learned-sink.ts): the
   * learned-address writer, inside this manager's single-writer queue.
   */
  get learnedSink(): LearnedAddressSink {
    return this.core.learned;
  }

  // ---------------------------------------------------------------- orphans, warnings

  /** Problems found at start-up that the operator should know (corrupt state moved aside, attachments not adoptable). */
  warnings(): string[] {
    return [...this.startWarnings];
  }

  /** Pinned attachments the state store does not account for (kept enforcing). */
  orphans(): OrphanInfo[] {
    return this.orphanOps.list();
  }

  adoptOrphan(id: string): Promise<AttachmentView> {
    return this.creating(() => this.orphanOps.adopt(id));
  }

  detachOrphan(id: string): Promise<void> {
    return this.orphanOps.detach(id);
  }

  /**
   * `netfenced flush`: every attachment (live, unadopted) detached and forgotten — the state store
   * no longer holds them, so a start does not re-create them — and every orphan's pins removed.
   * Returns the ids removed. The host-wide pins are the caller's (app.ts removes them on stop).
   */
  async flush(): Promise<{ detached: string[]; orphans: string[] }> {
    // From here on nothing new is attached or adopted, and the ones already on their way finish
    // first: an attach that completed after the list below was taken would outlive the flush.
    this.flushing = true;
    try {
      await Promise.allSettled([...this.inFlight]);
      const detached: string[] = [];
      for (const id of [...this.core.registry.records.keys(), ...this.core.registry.unadopted.keys()]) {
        await this.flow.detach(id, "flush");
        detached.push(id);
      }
      const orphans: string[] = [];
      for (const o of this.orphanOps.list()) {
        await this.orphanOps.detach(o.id);
        orphans.push(o.id);
      }
      await this.persist();
      return { detached, orphans };
    } catch (err) {
      this.flushing = false; // the flush failed and the daemon keeps running: attaches are possible again
      throw err;
    }
  }

  /** Audit mode on/off, the mode unchanged (`netfenced audit`, standalone daemons): a SetMode with audit. */
  setAudit(id: string, audit: boolean): Promise<void> {
    return this.applyCommand(id, { kind: "set-mode", mode: this.get(id).mode, audit });
  }

  /** Attach and adopt: refused once a flush began; tracked until done so that flush can wait for them. */
  private creating(run: () => Promise<AttachmentView>): Promise<AttachmentView> {
    if (this.flushing) return Promise.reject(new NetfenceError("FAILED_PRECONDITION", "netfenced is flushing: everything is being detached and the daemon stops; nothing new is attached"));
    const p = run();
    this.inFlight.add(p);
    const done = (): void => void this.inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  // ---------------------------------------------------------------- views

  get(id: string): AttachmentView {
    return this.core.registry.get(id);
  }

  /** An attachment's metadata (packet events carry it); undefined when not attached. */
  metadataOf(id: string): Readonly<Record<string, string>> | undefined {
    return this.core.registry.metadataOf(id);
  }

  /** All live attachments, oldest first (stable order for paging). */
  list(): AttachmentView[] {
    return this.core.registry.list();
  }

  get size(): number {
    return this.core.registry.size;
  }

  attachments(): readonly AttachmentView[] {
    return this.list();
  }

  policyOf(id: string): AttachmentPolicy {
    return this.core.registry.policyOf(id);
  }

  /** Which attachment (live, attaching, unadopted or orphaned) holds the target with this key (target.ts), or null. */
  holderOf(targetKey: string): string | null {
    return this.core.registry.findByKey(targetKey);
  }

  watchedTargets(): WatchedTarget[] {
    return this.core.registry.watchedTargets();
  }

  statsFor(ids: readonly string[]): Promise<AttachmentStatsView[]> {
    return this.statsReader.statsFor(ids);
  }

  stats(): Promise<readonly AttachmentStatsView[]> {
    return this.statsReader.all();
  }

  /** The effective policy as the kernel holds it, with per-rule hit counts (`netfenced rules`). */
  async listRules(id: string): Promise<RulesView> {
    const rec = this.core.registry.require(id);
    const [kernel, hits] = await Promise.all([this.opts.filter.inspect(id), this.opts.filter.ruleHits(id, rec.state.ruleIds.highWater)]);
    return buildRulesView(id, kernel, hits, rec.state);
  }

  /** Rules whose hit count moved since the last call, per attachment (Heartbeat). */
  ruleHits(): Promise<Map<string, HitsDelta>> {
    return this.hitsTracker.collect();
  }

  dnsStates(): DnsStateView[] {
    return this.core.registry.dnsStates();
  }

  // ---------------------------------------------------------------- maintenance, persistence

  checkIntegrity(): Promise<string[]> {
    return this.maintenance.checkIntegrity();
  }

  /** Removes expired CIDR rules and learned addresses from the policy and the kernel. */
  collectExpired(): Promise<number> {
    return this.maintenance.collectExpiredNow();
  }

  /** Resolves once a snapshot taken after this call is durable (writes are coalesced). */
  persist(): Promise<void> {
    return this.core.persistence.persist();
  }

  snapshot(): StoreSnapshot {
    return this.core.persistence.snapshot();
  }

  /** Stops timers and DNS servers after the queue drains; pinned filters keep enforcing. */
  async stop(): Promise<void> {
    this.maintenance.stop();
    this.tamper.stop();
    this.core.persistence.stop();
    await this.core.queue.run("stop", async () => {
      this.core.registry.close();
      for (const rec of this.core.registry.records.values()) {
        await rec.dns?.stop().catch(() => undefined);
        rec.dns = null;
      }
    });
    await this.persist().catch(() => undefined);
  }
}
