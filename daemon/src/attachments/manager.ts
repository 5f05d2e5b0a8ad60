import { randomBytes } from "node:crypto";
import net from "node:net";
import type { Logger } from "pino";
import { NetfenceError, isNetfenceError } from "@netfence/proto/errors";
import type { AttachMethodPreference, AttachSpec, Filter, FilterCounters, TargetSpec } from "../datapath/filter.js";
import type { AttachmentPolicy, PolicyCommand } from "../policy/policy.js";
import type { ControlPlaneHost } from "../control-plane/control-plane-host.js";
import type { LearnedAddressSink } from "../dns/learned-sink.js";
import type { AttachmentStatsView, AttachmentView } from "./attachment-view.js";
import type { PolicySource } from "./policy-source.js";
import type { DnsServerFactory, DnsServerHandle, HeldPort } from "./dns-server-factory.js";
import { parseAttachOptions, type AttachOptions } from "./attach-options.js";
import { DEFAULT_DNS_QUOTAS, type DnsQuotas } from "../dns/dns-quotas.js";
import { OpQueue } from "./op-queue.js";
import { PolicyState } from "../policy/policy-state.js";
import { planCommand, type KernelOp } from "../plan/command-plan.js";
import { planExpiry } from "../plan/expiry-plan.js";
import type { LearnedGuard } from "../plan/learned-guard.js";
import { LearnedWriter, type LearnedRefusalReport } from "./learned-writer.js";
import { freePorts, lowestFreePort, lowestFreeSlot } from "./allocation.js";
import { recordToStored, recordView, type AttachmentRecord } from "./attachment-record.js";
import { SnapshotWriter } from "./snapshot-writer.js";
import { interfaceIndex, resolveTarget, targetAlive, targetKey, type TargetRequest } from "./target.js";
import { reconcile } from "./reconcile.js";
import { orphanKey, type OrphanInfo } from "./orphan.js";
import { orphanRecord } from "./orphan-adoption.js";
import type { StateStore } from "../store/state-store.js";
import type { StoreSnapshot, StoredAttachment } from "../store/snapshot.js";
import { randomDaemonId } from "../store/daemon-id.js";

/**
 * The attachment manager: registry of attachments and THE single writer of kernel state. Every
 * kernel-changing operation (attach, detach, policy commands, DNS-learned inserts, TTL garbage
 * collection, restart adoption) runs through one OpQueue. It is the ControlPlaneHost the
 * control-plane connection drives; its learned-address writer is the LearnedAddressSink the DNS servers write to.
 */

export interface ManagerOptions {
  readonly filter: Filter;
  readonly policySource: PolicySource;
  readonly store: StateStore;
  readonly dnsServers: DnsServerFactory;
  readonly logger: Logger;
  readonly dns: {
    readonly listenAddr: string;
    readonly portMin: number;
    readonly portMax: number;
    readonly minTtlSeconds: number;
    /** Defaults of every attachment's quotas (DEFAULT_DNS_QUOTAS when absent). */
    readonly quotas?: DnsQuotas;
    /** Query types refused unless an attachment says otherwise (none when absent). */
    readonly refuseTypes?: readonly number[];
  };
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
  readonly newId?: () => string;
  /** Re-create stored attachments whose pins are gone but whose target is there (a reboot). Default true. */
  readonly restore?: boolean;
  /** How interface filters are attached (config `bpf.attach_method`); default "auto". */
  readonly attachMethod?: AttachMethodPreference;
}

export interface AttachInput {
  readonly target: TargetRequest;
  readonly metadata: Readonly<Record<string, string>>;
}

export interface StartReport {
  readonly adopted: string[];
  /** Stored attachments whose target vanished while the daemon was down (or that could not be re-created). */
  readonly removed: string[];
  /** Pinned attachments the store did not know: kept enforcing, reported, adoptable. */
  readonly orphans: string[];
  /** Adopted filters that were no longer attached and were attached again. */
  readonly relinked: string[];
  /** Stored attachments whose pins were gone (a reboot), re-created. */
  readonly recreated: string[];
  /** Pins of attaches that never linked (enforcing nothing), removed. */
  readonly cleaned: string[];
  /**
   * Stored and pinned, but the filter could not adopt them (e.g. incompatible pins): reported,
   * left in place (still enforcing), kept in the store for the next start, and detachable.
   */
  readonly unadopted: string[];
}

export interface WatchedTarget {
  readonly id: string;
  readonly target: TargetSpec;
  readonly ifindex: number;
}

interface Reservation {
  readonly id: string;
  readonly options: AttachOptions;
  readonly slot: number;
  readonly port: number;
  /** The DNS port bound for it (allocation by binding), handed to its DNS server at install. */
  readonly held: HeldPort | null;
  readonly key: string;
  /** Settles when the attach finished (either way); commands for the id wait for it. */
  readonly settled: Promise<void>;
}

export class AttachmentManager implements ControlPlaneHost {
  private readonly queue = new OpQueue();
  private readonly records = new Map<string, AttachmentRecord>();
  private readonly reservations = new Map<string, Reservation>();
  private readonly unadopted = new Map<string, StoredAttachment>();
  /** Pinned attachments the store does not account for: kept enforcing until adopted or detached on purpose. */
  private readonly orphanInfos = new Map<string, OrphanInfo>();
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly newId: () => string;
  private daemonIdValue = "";
  private gcTimer: NodeJS.Timeout | null = null;
  private gcQueued = false;
  private integrityTimer: NodeJS.Timeout | null = null;
  private integrityQueued = false;
  /** Attachments restored by the integrity check since start (metrics, tests). */
  integrityRestores = 0;
  private readonly startWarnings: string[] = [];
  private readonly writer: SnapshotWriter;
  private readonly learned: LearnedWriter;
  private hostVersion = -1;
  private readonly dnsDownLogged = new Map<string, number>();
  private stopped = false;

  constructor(private readonly opts: ManagerOptions) {
    this.log = opts.logger.child({ component: "attachments" });
    this.now = opts.now ?? Date.now;
    this.newId = opts.newId ?? (() => `nf-${randomBytes(6).toString("hex")}`);
    this.writer = new SnapshotWriter(opts.store, () => this.snapshot(), this.log);
    this.learned = new LearnedWriter(
      {
        queue: this.queue,
        filter: opts.filter,
        record: (id) => this.records.get(id),
        records: () => this.records.values(),
        saveSoon: () => this.writer.saveSoon(),
        now: () => this.now(),
      },
      {
        guard: opts.learnedGuard ?? null,
        learnedQuota: (rec) => this.quotasOf(rec).learned,
        onRefused: opts.onLearnedRefused,
        logger: this.log,
      },
    );
  }

  get daemonId(): string {
    return this.daemonIdValue;
  }

  get queueDepth(): number {
    return this.queue.depth;
  }

  /** Loads the store, re-adopts pinned attachments, cleans orphans, starts the TTL collector. */
  async start(): Promise<StartReport> {
    const report = await this.queue.run(() => this.restore());
    const interval = this.opts.gcIntervalMs ?? 1000;
    if (interval > 0) {
      this.gcTimer = setInterval(() => this.scheduleGc(), interval);
      this.gcTimer.unref();
    }
    const integrity = this.opts.integrityIntervalMs ?? 2000;
    if (integrity > 0) {
      this.integrityTimer = setInterval(() => {
        if (this.integrityQueued || this.stopped) return;
        this.integrityQueued = true;
        this.checkIntegrity()
          .catch((err: unknown) => this.log.error({ err }, "integrity check failed"))
          .finally(() => {
            this.integrityQueued = false;
          });
      }, integrity);
      this.integrityTimer.unref();
    }
    return report;
  }

  private async restore(): Promise<StartReport> {
    const snapshot = await this.opts.store.load();
    this.daemonIdValue = snapshot?.daemonId ?? (this.opts.store.durable ? randomDaemonId() : (this.opts.fallbackDaemonId ?? randomDaemonId()));
    const result = await reconcile({
      filter: this.opts.filter,
      logger: this.log,
      stored: snapshot?.attachments ?? [],
      dnsAddress: (port) => this.dnsAddress(port),
      nowMs: this.now(),
      restore: this.opts.restore,
      cgroupRoot: this.opts.cgroupRoot,
      recreate: (s, options, policy) => this.opts.filter.attach(this.attachSpec(s.id, s.slot, s.target, s.dnsPort, options), policy),
      relink: (s) => this.opts.filter.relink(s.id, s.target, this.opts.attachMethod),
    });
    for (const s of result.unadopted) this.unadopted.set(s.id, s);
    for (const o of result.orphans) this.orphanInfos.set(o.id, o);
    this.startWarnings.push(...(this.opts.store.warnings ?? []));
    if (result.unadopted.length > 0) {
      this.startWarnings.push(`${result.unadopted.length} stored attachment(s) could not be adopted or re-created and are kept for the next start: ${result.unadopted.map((s) => s.id).join(", ")}`);
    }
    for (const rec of result.records) this.records.set(rec.id, rec);
    // DNS servers come back on their ports; binding is cheap, so all at once.
    await Promise.all(
      result.records.map(async (rec) => {
        rec.dns = await this.startDns(rec).catch((err: unknown) => {
          this.log.error({ attachmentId: rec.id, err }, "DNS server could not be restarted; the filter keeps enforcing");
          return null;
        });
        this.log.info({ attachmentId: rec.id, target: rec.targetText, slot: rec.slot, dnsAddress: rec.dnsAddress }, "re-adopted pinned attachment");
      }),
    );
    for (const id of result.removed) this.opts.policySource.unsubscribed(id, "removed");
    // Learned addresses kept from before the restart meet today's guard (protected_deny may have changed).
    this.hostVersion = this.opts.hostAddressesVersion?.() ?? -1;
    for (const rec of result.records) {
      await this.learned.recheck(rec).catch((err: unknown) => this.log.warn({ attachmentId: rec.id, err }, "re-checking learned addresses failed"));
    }
    await this.persist();
    return {
      adopted: result.records.map((r) => r.id),
      removed: result.removed,
      orphans: result.orphans.map((o) => o.id),
      unadopted: result.unadopted.map((s) => s.id),
      relinked: result.relinked,
      recreated: result.recreated,
      cleaned: result.cleaned,
    };
  }

  // ---------------------------------------------------------------- attach / detach

  async attach(input: AttachInput): Promise<AttachmentView> {
    let settle!: () => void;
    const settled = new Promise<void>((r) => (settle = r));
    const reservation = await this.queue.run(async () => {
      this.assertRunning();
      const target = resolveTarget(input.target, this.opts.cgroupRoot, this.opts.netClassDir);
      const existing = this.findByKey(target.key);
      if (existing !== null && this.orphanInfos.has(existing)) {
        throw new NetfenceError(
          "FAILED_PRECONDITION",
          `${target.text} is held by the orphaned filter ${existing}: re-register it with \`netfenced adopt --id ${existing}\` or remove it with \`netfenced detach --orphan ${existing}\``,
          { details: { target: target.text, id: existing } },
        );
      }
      if (existing !== null) {
        throw new NetfenceError("ALREADY_EXISTS", `${target.text} is already attached as ${existing}`, {
          details: { target: target.text, id: existing },
        });
      }
      const options = parseAttachOptions(input.metadata, target.spec.kind);
      const { port, held } = await this.reservePort();
      const r: Reservation = { id: this.uniqueId(), options, slot: this.freeSlot(), port, held, key: target.key, settled };
      this.reservations.set(r.id, r);
      return { r, target };
    });
    const { r, target } = reservation;
    const alog = this.log.child({ attachmentId: r.id });
    const view: AttachmentView = {
      id: r.id,
      target: target.text,
      type: target.spec.kind,
      mode: "disabled",
      dnsMode: "disabled",
      dnsAddress: this.dnsAddress(r.port),
      metadata: { ...input.metadata },
      attachedAtMs: this.now(),
      method: target.spec.kind === "interface" ? "tcx" : "cgroup-link",
    };
    let subscribed = false;
    try {
      const policy = await this.opts.policySource.subscribe(view);
      subscribed = true;
      const rec = await this.queue.run(() => this.install(r, target.spec, target.text, view, policy));
      try {
        await this.persist();
      } catch (err) {
        // Not durable → not attached: a restart would find pins without a record and remove them.
        subscribed = false;
        await this.queue.run(() => this.remove(rec.id, "error")).catch(() => undefined);
        throw err;
      }
      alog.info({ target: rec.targetText, type: rec.target.kind, method: rec.method, dnsAddress: rec.dnsAddress }, "attached");
      return recordView(rec);
    } catch (err) {
      alog.warn({ err, target: target.text }, "attach failed; rolled back");
      if (subscribed) this.opts.policySource.unsubscribed(r.id, "error", err instanceof Error ? err.message : String(err));
      throw NetfenceError.from(err);
    } finally {
      this.reservations.delete(r.id);
      await r.held?.release(); // no-op once its DNS server took the sockets over
      settle();
    }
  }

  private async install(r: Reservation, spec: TargetSpec, text: string, view: AttachmentView, policy: AttachmentPolicy): Promise<AttachmentRecord> {
    this.assertRunning();
    // The target may have vanished while the control plane was answering.
    const ifindex = spec.kind === "interface" ? interfaceIndex(spec.name) : 0;
    if (spec.kind === "interface" && ifindex === null) {
      throw new NetfenceError("NOT_FOUND", `interface "${spec.name}" disappeared during attach`);
    }
    const state = new PolicyState(policy);
    const result = await this.opts.filter.attach(this.attachSpec(r.id, r.slot, spec, r.port, r.options), state.compile(this.now()));
    const rec: AttachmentRecord = {
      id: r.id,
      slot: r.slot,
      target: spec,
      key: r.key,
      targetText: text,
      dnsPort: r.port,
      dnsAddress: view.dnsAddress,
      metadata: view.metadata,
      options: r.options,
      // The time it became live: List pages are ordered by it, so an attach that waited for its
      // SubscribedAck does not land behind a page token already handed out.
      attachedAtMs: this.now(),
      method: result.method,
      ifindex: ifindex ?? result.ifindex,
      state,
      dns: null,
      stored: null,
    };
    try {
      rec.dns = await this.startDns(rec, r.held ?? undefined);
    } catch (err) {
      await this.opts.filter.detach(r.id).catch((e: unknown) => this.log.error({ attachmentId: r.id, err: e }, "rollback detach failed"));
      throw new NetfenceError("UNAVAILABLE", `DNS server for ${r.id} could not listen on ${view.dnsAddress}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.records.set(rec.id, rec);
    return rec;
  }

  private attachSpec(id: string, slot: number, target: TargetSpec, dnsPort: number, options: AttachOptions): AttachSpec {
    const { listenAddr: listen, portMin, portMax } = this.opts.dns;
    return {
      id,
      slot,
      target,
      dns: { ipv4: net.isIPv4(listen) ? listen : null, ipv6: net.isIPv6(listen) ? listen : null, port: dnsPort, portMin, portMax },
      guards: options.guards,
      method: this.opts.attachMethod,
    };
  }

  private quotasOf(rec: { readonly options: AttachOptions }): DnsQuotas {
    return { ...(this.opts.dns.quotas ?? DEFAULT_DNS_QUOTAS), ...rec.options.quotas };
  }

  private startDns(rec: AttachmentRecord, held?: HeldPort): Promise<DnsServerHandle> {
    const o = rec.options;
    return this.opts.dnsServers.start(rec.id, { host: this.opts.dns.listenAddr, port: rec.dnsPort }, () => rec.state.dns, {
      kind: rec.target.kind,
      quotas: this.quotasOf(rec),
      refuseTypes: o.refuseTypes ?? this.opts.dns.refuseTypes ?? [],
      workloadAddresses: o.guards.workloadAddresses,
      held,
    });
  }

  async detach(id: string): Promise<void> {
    await this.queue.run(() => this.remove(id, "detached"));
    await this.persistOrLog();
  }

  /** The target watcher saw the interface/cgroup vanish. */
  async targetGone(id: string): Promise<void> {
    await this.queue.run(async () => {
      if (!this.records.has(id)) return;
      await this.remove(id, "removed");
    });
    await this.persistOrLog();
  }

  private async remove(id: string, reason: "detached" | "removed" | "error"): Promise<void> {
    const rec = this.records.get(id);
    if (rec === undefined && this.unadopted.has(id)) {
      await this.opts.filter.detach(id).catch((err: unknown) => {
        if (!(isNetfenceError(err) && err.code === "NOT_FOUND")) throw err;
      });
      this.unadopted.delete(id);
      this.log.info({ attachmentId: id, reason }, "unadopted attachment removed");
      this.opts.policySource.unsubscribed(id, reason);
      return;
    }
    if (rec === undefined && this.orphanInfos.has(id)) {
      throw new NetfenceError("NOT_FOUND", `"${id}" is an orphaned filter, not an attachment: remove it with \`netfenced detach --orphan ${id}\` or re-register it with \`netfenced adopt --id ${id}\``, { details: { id } });
    }
    if (rec === undefined) throw new NetfenceError("NOT_FOUND", `no attachment with id "${id}"`, { details: { id } });
    try {
      await this.opts.filter.detach(id);
    } catch (err) {
      if (!(isNetfenceError(err) && err.code === "NOT_FOUND")) throw err;
    }
    this.records.delete(id);
    await rec.dns?.stop().catch((err: unknown) => this.log.warn({ attachmentId: id, err }, "DNS server stop failed"));
    this.log.info(
      { attachmentId: id, target: rec.targetText, reason },
      reason === "detached" ? "detached" : reason === "removed" ? "target vanished; attachment removed" : "attach rolled back",
    );
    this.opts.policySource.unsubscribed(id, reason);
  }

  // ---------------------------------------------------------------- orphans

  /** Problems found at start-up that the operator should know (corrupt state moved aside, attachments not adoptable). */
  warnings(): string[] {
    return [...this.startWarnings];
  }

  /** Pinned attachments the state store does not account for (kept enforcing). */
  orphans(): OrphanInfo[] {
    return [...this.orphanInfos.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /**
   * Re-registers an orphan as a live attachment, its policy read back from the kernel maps (same
   * id, slot, pins and DNS port). The control plane hears Subscribed and may answer with a policy.
   */
  async adoptOrphan(id: string): Promise<AttachmentView> {
    const view = await this.queue.run(async () => {
      this.assertRunning();
      const o = this.orphanInfos.get(id);
      if (o === undefined) throw new NetfenceError("NOT_FOUND", `no orphaned attachment "${id}"`, { details: { id } });
      const key = orphanKey(o);
      const holder = key === null ? null : this.findByKey(key, id);
      if (holder !== null) throw new NetfenceError("FAILED_PRECONDITION", `${o.targetText} is already attached as ${holder}`, { details: { id, holder } });
      if ([...this.records.values()].some((r) => r.dnsPort === o.dnsPort)) {
        throw new NetfenceError("FAILED_PRECONDITION", `the DNS port ${o.dnsPort} of orphan ${id} is used by another attachment`, { details: { id } });
      }
      const rec = orphanRecord(o, { now: this.now(), dnsAddress: (port) => this.dnsAddress(port), portMin: this.opts.dns.portMin, portMax: this.opts.dns.portMax });
      if (!o.attached) {
        const r = await this.opts.filter.relink(id, rec.target, this.opts.attachMethod);
        this.log.warn({ attachmentId: id, method: r.method }, "orphan was not attached any more; attached it again");
      }
      rec.dns = await this.startDns(rec).catch((err: unknown) => {
        this.log.error({ attachmentId: id, err }, "DNS server of the adopted orphan could not start; retried by the integrity check");
        return null;
      });
      this.orphanInfos.delete(id);
      this.records.set(id, rec);
      this.log.warn({ attachmentId: id, target: rec.targetText, mode: rec.state.mode, entries: o.entries }, "orphaned attachment adopted; its policy was read back from the kernel");
      return recordView(rec);
    });
    await this.persistOrLog();
    this.opts.policySource.adopted?.(view);
    return view;
  }

  /** Removes an orphan's filter and pins on purpose. */
  async detachOrphan(id: string): Promise<void> {
    await this.queue.run(async () => {
      if (!this.orphanInfos.has(id)) throw new NetfenceError("NOT_FOUND", `no orphaned attachment "${id}"`, { details: { id } });
      try {
        await this.opts.filter.detach(id);
      } catch (err) {
        if (!(isNetfenceError(err) && err.code === "NOT_FOUND")) throw err;
      }
      this.orphanInfos.delete(id);
      this.log.warn({ attachmentId: id }, "orphaned attachment detached on request");
    });
  }

  // ---------------------------------------------------------------- views

  get(id: string): AttachmentView {
    const rec = this.records.get(id);
    if (rec === undefined) throw new NetfenceError("NOT_FOUND", `no attachment with id "${id}"`, { details: { id } });
    return recordView(rec);
  }

  /** All live attachments, oldest first (stable order for paging). */
  list(): AttachmentView[] {
    return [...this.records.values()].sort((a, b) => a.attachedAtMs - b.attachedAtMs || (a.id < b.id ? -1 : 1)).map((r) => recordView(r));
  }

  get size(): number {
    return this.records.size;
  }

  attachments(): readonly AttachmentView[] {
    return this.list();
  }

  policyOf(id: string): AttachmentPolicy {
    const rec = this.records.get(id);
    if (rec === undefined) throw new NetfenceError("NOT_FOUND", `no attachment with id "${id}"`, { details: { id } });
    return rec.state.toPolicy();
  }

  watchedTargets(): WatchedTarget[] {
    return [...this.records.values()].map((r) => ({ id: r.id, target: r.target, ifindex: r.ifindex }));
  }

  /** Stats for some (or all) attachments: kernel counters + DNS counters. */
  async statsFor(ids: readonly string[]): Promise<AttachmentStatsView[]> {
    const counters = await this.countersOf(ids.filter((id) => this.records.has(id)));
    return ids.map((id) => {
      const c = counters.get(id);
      const d = this.records.get(id)?.dns?.stats();
      return {
        id,
        packetsAllowed: c?.allowed ?? 0n,
        packetsBlocked: c?.blocked ?? 0n,
        packetsAudited: c?.audited ?? 0n,
        dnsQueriesAllowed: d?.allowed ?? 0n,
        dnsQueriesBlocked: d?.blocked ?? 0n,
      };
    });
  }

  /**
   * Kernel counters, tolerating attachments that vanish meanwhile (a target deleted between
   * taking a List page and reading its counters): those read as zero instead of failing the call.
   */
  private async countersOf(ids: readonly string[]): Promise<Map<string, FilterCounters>> {
    if (ids.length === 0) return new Map();
    try {
      return await this.opts.filter.counters(ids);
    } catch (err) {
      if (ids.length === 1) {
        this.log.debug({ attachmentId: ids[0], err }, "counters unavailable");
        return new Map();
      }
      const out = new Map<string, FilterCounters>();
      for (const id of ids) for (const [k, v] of await this.countersOf([id])) out.set(k, v);
      return out;
    }
  }

  /** Per attachment: whether its DNS server listens, its learned addresses, its DNS counts by outcome (metrics). */
  dnsStates(): { id: string; listening: boolean; learned: number; outcomes: Readonly<Record<string, number>> }[] {
    return [...this.records.values()].map((r) => ({ id: r.id, listening: r.dns !== null, learned: r.state.learned.size, outcomes: r.dns?.outcomes?.() ?? {} }));
  }

  async stats(): Promise<readonly AttachmentStatsView[]> {
    return this.statsFor([...this.records.keys()]);
  }

  // ---------------------------------------------------------------- commands

  async applyCommand(attachmentId: string, command: PolicyCommand): Promise<void> {
    const pending = this.reservations.get(attachmentId);
    if (pending !== undefined) await pending.settled;
    await this.queue.run(async () => {
      const rec = this.records.get(attachmentId);
      if (rec === undefined) throw new NetfenceError("NOT_FOUND", `no attachment with id "${attachmentId}"`, { details: { id: attachmentId } });
      const plan = planCommand(rec.state, command, this.now(), this.learned.guard);
      await this.runOp(rec.id, plan.op);
      plan.commit();
      rec.stored = null;
      for (const r of plan.refused ?? []) {
        this.learned.report({ attachmentId: rec.id, name: r.name, address: r.key.slice(0, r.key.lastIndexOf("/")), reason: r.reason, when: "recheck" });
      }
      this.log.debug({ attachmentId, command: command.kind, op: plan.op.kind }, "command applied");
    });
    await this.persistOrLog();
  }

  private async runOp(id: string, op: KernelOp): Promise<void> {
    const f = this.opts.filter;
    switch (op.kind) {
      case "none":
        return;
      case "mode":
        return f.setMode(id, op.mode, op.audit);
      case "upsert":
        return f.upsertEntries(id, op.entries);
      case "delete":
        return f.deleteEntries(id, op.cidrs);
      case "replace":
        return f.replacePolicy(id, op.policy);
    }
  }

  // ---------------------------------------------------------------- DNS-learned addresses

  /**
   * Where the DNS servers write the addresses their answers produced (dns/learned-sink.ts): the
   * learned-address writer, inside this manager's single-writer queue.
   */
  get learnedSink(): LearnedAddressSink {
    return this.learned;
  }

  // ---------------------------------------------------------------- integrity

  /**
   * Integrity check (SPEC §9): a live attachment whose pins vanished — removed by someone else,
   * which for a pinned link also detaches it — is reported and restored with its current policy,
   * same id, slot and DNS port. A vanished target is the target watcher's business, not this.
   * DNS servers that could not be restarted at start-up are retried here too.
   * Returns the ids of the filters restored.
   */
  checkIntegrity(): Promise<string[]> {
    return this.queue.run(async () => {
      if (this.stopped || this.records.size === 0) return [];
      const pinned = new Set(await this.opts.filter.listPinned());
      const restored: string[] = [];
      for (const rec of this.records.values()) {
        if (rec.dns === null) {
          // A DNS server that could not bind at restart (port briefly held elsewhere): retry.
          rec.dns = await this.startDns(rec).catch((err: unknown) => {
            // Reported every 30 s while it lasts (e.g. a port squatted while the daemon was down).
            const last = this.dnsDownLogged.get(rec.id) ?? 0;
            if (this.now() - last >= 30_000) {
              this.dnsDownLogged.set(rec.id, this.now());
              this.log.error({ attachmentId: rec.id, dnsAddress: rec.dnsAddress, err }, "DNS server still cannot listen; retrying every 2 s");
            }
            return null;
          });
          if (rec.dns !== null) {
            this.dnsDownLogged.delete(rec.id);
            this.log.info({ attachmentId: rec.id, dnsAddress: rec.dnsAddress }, "DNS server restarted");
          }
        }
        if (pinned.has(rec.id) || !targetAlive(rec.target, rec.ifindex)) continue;
        const alog = this.log.child({ attachmentId: rec.id });
        alog.error({ target: rec.targetText }, "the pins of this attachment were removed by someone else; restoring the filter");
        // Let the filter drop whatever it still holds for the id, then attach afresh.
        await this.opts.filter.detach(rec.id).catch(() => undefined);
        try {
          await this.opts.filter.attach(this.attachSpec(rec.id, rec.slot, rec.target, rec.dnsPort, rec.options), rec.state.compile(this.now()));
          restored.push(rec.id);
          this.integrityRestores++;
          alog.warn("filter restored");
        } catch (err) {
          alog.error({ err }, "restoring the filter failed; will retry");
        }
      }
      return restored;
    });
  }

  // ---------------------------------------------------------------- TTL garbage collection

  private scheduleGc(): void {
    if (this.gcQueued || this.stopped) return;
    this.gcQueued = true;
    const hostVersion = this.opts.hostAddressesVersion?.() ?? -1;
    if (hostVersion !== this.hostVersion) {
      // The host gained or lost an address: a learned address may now be one of its own.
      this.hostVersion = hostVersion;
      void this.learned.recheckAll();
    }
    this.queue
      .run(() => this.collectExpired())
      .catch((err: unknown) => this.log.error({ err }, "TTL garbage collection failed"))
      .finally(() => {
        this.gcQueued = false;
      });
  }

  /** Removes expired CIDR rules and learned addresses from the policy and the kernel. */
  async collectExpired(): Promise<number> {
    const now = this.now();
    let removed = 0;
    for (const rec of this.records.values()) {
      const plan = planExpiry(rec.state, now);
      if (plan === null) continue;
      try {
        // Expired entries are already ignored by the kernel, so two separate calls are safe here.
        if (plan.deletes.length > 0) await this.opts.filter.deleteEntries(rec.id, plan.deletes);
        if (plan.upserts.length > 0) await this.opts.filter.upsertEntries(rec.id, plan.upserts);
      } catch (err) {
        this.log.warn({ attachmentId: rec.id, err }, "expired entries could not be removed; retrying");
        continue;
      }
      plan.commit();
      rec.stored = null;
      removed += plan.count;
      // An explicit allow that expired may have been what let a learned address through.
      for (const cidr of plan.allowsExpired) {
        await this.learned.recheck(rec, { scope: cidr }).catch((err: unknown) => this.log.warn({ attachmentId: rec.id, err }, "re-checking learned addresses failed"));
      }
      this.log.debug({ attachmentId: rec.id, prefixes: plan.count }, "expired entries removed");
    }
    if (removed > 0) this.writer.saveSoon();
    return removed;
  }

  // ---------------------------------------------------------------- persistence

  /**
   * After a change already made in the kernel and in memory: a failed write must not turn it
   * into a reported failure (it did happen); it is logged and the next write carries it.
   */
  private async persistOrLog(): Promise<void> {
    await this.persist().catch((err: unknown) => this.log.error({ err }, "state not saved; the next write will carry this change"));
  }

  /** Resolves once a snapshot taken after this call is durable (writes are coalesced). */
  persist(): Promise<void> {
    return this.writer.save();
  }

  snapshot(): StoreSnapshot {
    const attachments = [...this.records.values()].map((r) => (r.stored ??= recordToStored(r)));
    attachments.push(...this.unadopted.values());
    return { version: 1, daemonId: this.daemonIdValue, attachments };
  }

  /** Stops timers and DNS servers after the queue drains; pinned filters keep enforcing. */
  async stop(): Promise<void> {
    if (this.gcTimer !== null) clearInterval(this.gcTimer);
    this.gcTimer = null;
    if (this.integrityTimer !== null) clearInterval(this.integrityTimer);
    this.integrityTimer = null;
    this.writer.stop();
    await this.queue.run(async () => {
      this.stopped = true;
      for (const rec of this.records.values()) {
        await rec.dns?.stop().catch(() => undefined);
        rec.dns = null;
      }
    });
    await this.persist().catch(() => undefined);
  }

  // ---------------------------------------------------------------- allocation

  private assertRunning(): void {
    if (this.stopped) throw new NetfenceError("UNAVAILABLE", "the daemon is shutting down");
  }

  private findByKey(key: string, except?: string): string | null {
    for (const r of this.records.values()) if (r.key === key) return r.id;
    for (const r of this.reservations.values()) if (r.key === key) return r.id;
    for (const r of this.unadopted.values()) if (targetKey(r.target) === key) return r.id;
    for (const o of this.orphanInfos.values()) if (o.id !== except && orphanKey(o) === key) return o.id;
    return null;
  }

  private uniqueId(): string {
    for (;;) {
      const id = this.newId();
      if (!this.records.has(id) && !this.reservations.has(id) && !this.unadopted.has(id) && !this.orphanInfos.has(id)) return id;
    }
  }

  private freeSlot(): number {
    const used = new Set<number>();
    for (const r of this.records.values()) used.add(r.slot);
    for (const r of this.reservations.values()) used.add(r.slot);
    for (const r of this.unadopted.values()) used.add(r.slot);
    for (const o of this.orphanInfos.values()) used.add(o.slot);
    return lowestFreeSlot(used);
  }

  /**
   * A DNS port for a new attachment: allocated by binding when the factory can (ports held by
   * other processes are skipped and reported), else the lowest one no attachment uses.
   */
  private async reservePort(): Promise<{ port: number; held: HeldPort | null }> {
    const used = new Set<number>();
    for (const r of this.records.values()) used.add(r.dnsPort);
    for (const r of this.reservations.values()) used.add(r.port);
    for (const r of this.unadopted.values()) used.add(r.dnsPort);
    for (const o of this.orphanInfos.values()) used.add(o.dnsPort);
    const { listenAddr, portMin, portMax } = this.opts.dns;
    const reserve = this.opts.dnsServers.reservePort;
    if (reserve === undefined) return { port: lowestFreePort(used, portMin, portMax), held: null };
    const candidates = freePorts(used, portMin, portMax);
    if (candidates.length === 0) lowestFreePort(used, portMin, portMax); // throws RESOURCE_EXHAUSTED with the usual message
    const { held, taken } = await reserve.call(this.opts.dnsServers, listenAddr, candidates);
    if (taken.length > 0) {
      this.log.warn(
        { taken: taken.map((t) => `${t.port} ${t.holder}`), port: held.port },
        `DNS ports held by other processes were skipped: ${taken.map((t) => `${t.port} (${t.holder})`).join(", ")}`,
      );
    }
    return { port: held.port, held };
  }

  private dnsAddress(port: number): string {
    const host = this.opts.dns.listenAddr;
    return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
  }
}
