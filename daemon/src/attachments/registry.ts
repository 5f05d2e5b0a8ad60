import { NetfenceError } from "@netfence/proto/errors";
import type { AttachmentPolicy } from "../policy/policy.js";
import type { TargetSpec } from "../datapath/filter.js";
import type { StoredAttachment } from "../store/snapshot.js";
import type { AttachmentView } from "./attachment-view.js";
import type { AttachOptions } from "./attach-options.js";
import type { HeldPort } from "../dns/dns-servers.js";
import { recordView, type AttachmentRecord } from "./attachment-record.js";
import { lowestFreeSlot } from "./allocation.js";
import { targetKey } from "./target.js";
import { orphanKey, type OrphanInfo } from "./orphan.js";

/**
 * The registry of attachments: what the daemon holds, by id — live records, attaches in flight
 * (reservations), stored attachments that could not be adopted, and orphans (pinned filters the
 * store does not know). Lookups, id/slot uniqueness and views; no kernel call, no I/O. Written
 * only from inside the single-writer queue (the components of attachments/ that own the
 * operations); read from anywhere.
 */

export interface Reservation {
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

export interface WatchedTarget {
  readonly id: string;
  readonly target: TargetSpec;
  readonly ifindex: number;
}

export interface DnsStateView {
  readonly id: string;
  readonly listening: boolean;
  readonly learned: number;
  readonly outcomes: Readonly<Record<string, number>>;
}

export class AttachmentRegistry {
  readonly records = new Map<string, AttachmentRecord>();
  readonly reservations = new Map<string, Reservation>();
  readonly unadopted = new Map<string, StoredAttachment>();
  /** Pinned attachments the store does not account for: kept enforcing until adopted or detached on purpose. */
  readonly orphans = new Map<string, OrphanInfo>();
  private closed = false;

  constructor(private readonly newId: () => string) {}

  /** From now on no attach or adoption starts (the daemon is stopping). */
  close(): void {
    this.closed = true;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  assertRunning(): void {
    if (this.closed) throw new NetfenceError("UNAVAILABLE", "the daemon is shutting down");
  }

  record(id: string): AttachmentRecord | undefined {
    return this.records.get(id);
  }

  /** The live record of `id`, or NOT_FOUND. */
  require(id: string): AttachmentRecord {
    const rec = this.records.get(id);
    if (rec === undefined) throw new NetfenceError("NOT_FOUND", `no attachment with id "${id}"`, { details: { id } });
    return rec;
  }

  get size(): number {
    return this.records.size;
  }

  get(id: string): AttachmentView {
    return recordView(this.require(id));
  }

  /** The attachment's metadata, undefined when it is not (or no longer) attached: for packet events. */
  metadataOf(id: string): Readonly<Record<string, string>> | undefined {
    return this.records.get(id)?.metadata;
  }

  /** All live attachments, oldest first (stable order for paging). */
  list(): AttachmentView[] {
    return [...this.records.values()].sort((a, b) => a.attachedAtMs - b.attachedAtMs || (a.id < b.id ? -1 : 1)).map((r) => recordView(r));
  }

  policyOf(id: string): AttachmentPolicy {
    return this.require(id).state.toPolicy();
  }

  watchedTargets(): WatchedTarget[] {
    return [...this.records.values()].map((r) => ({ id: r.id, target: r.target, ifindex: r.ifindex }));
  }

  /** Per attachment: whether its DNS server listens, its learned addresses, its DNS counts by outcome (metrics). */
  dnsStates(): DnsStateView[] {
    return [...this.records.values()].map((r) => ({ id: r.id, listening: r.dns !== null, learned: r.state.learned.size, outcomes: r.dns?.outcomes?.() ?? {} }));
  }

  /** Which id (live, attaching, unadopted or orphaned; `except` aside) holds the target `key`, or null. */
  findByKey(key: string, except?: string): string | null {
    for (const r of this.records.values()) if (r.key === key) return r.id;
    for (const r of this.reservations.values()) if (r.key === key) return r.id;
    for (const r of this.unadopted.values()) if (targetKey(r.target) === key) return r.id;
    for (const o of this.orphans.values()) if (o.id !== except && orphanKey(o) === key) return o.id;
    return null;
  }

  uniqueId(): string {
    for (;;) {
      const id = this.newId();
      if (!this.records.has(id) && !this.reservations.has(id) && !this.unadopted.has(id) && !this.orphans.has(id)) return id;
    }
  }

  freeSlot(): number {
    const used = new Set<number>();
    for (const r of this.records.values()) used.add(r.slot);
    for (const r of this.reservations.values()) used.add(r.slot);
    for (const r of this.unadopted.values()) used.add(r.slot);
    for (const o of this.orphans.values()) used.add(o.slot);
    return lowestFreeSlot(used);
  }

  /** DNS ports every attachment (of any kind) holds. */
  usedPorts(): Set<number> {
    const used = new Set<number>();
    for (const r of this.records.values()) used.add(r.dnsPort);
    for (const r of this.reservations.values()) used.add(r.port);
    for (const r of this.unadopted.values()) used.add(r.dnsPort);
    for (const o of this.orphans.values()) used.add(o.dnsPort);
    return used;
  }
}
