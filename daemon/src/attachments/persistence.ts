import type { Logger } from "pino";
import type { StateStore } from "../store/state-store.js";
import type { StoreSnapshot } from "../store/snapshot.js";
import { recordToStored } from "./attachment-record.js";
import { randomDaemonId } from "../store/daemon-id.js";
import type { AttachmentRegistry } from "./registry.js";
import { SnapshotWriter } from "./snapshot-writer.js";

/**
 * Persistence of the registry: the daemon id and the snapshot of every live and unadopted
 * attachment (records cache their stored form until they change: `rec.stored = null`), written
 * through the coalescing SnapshotWriter.
 */
export class Persistence {
  private daemonIdValue = "";
  private loaded: StoreSnapshot | null | undefined = undefined;
  private readonly writer: SnapshotWriter;

  constructor(
    readonly store: StateStore,
    private readonly registry: AttachmentRegistry,
    private readonly log: Logger,
  ) {
    this.writer = new SnapshotWriter(store, () => this.snapshot(), log);
  }

  get daemonId(): string {
    return this.daemonIdValue;
  }

  /**
   * Loads the store once (the start-up restore takes the snapshot) and settles the daemon id: the
   * stored one, else a new random one (durable store) or `fallbackId` (memory store). The daemon
   * id is known from here on, before any attachment is restored.
   */
  async load(fallbackId?: string): Promise<StoreSnapshot | null> {
    if (this.loaded === undefined) {
      const snapshot = await this.store.load();
      this.daemonIdValue = snapshot?.daemonId ?? (this.store.durable ? randomDaemonId() : (fallbackId ?? randomDaemonId()));
      this.loaded = snapshot;
    }
    return this.loaded;
  }

  /** Resolves once a snapshot taken after this call is durable (writes are coalesced). */
  persist(): Promise<void> {
    return this.writer.save();
  }

  /**
   * After a change already made in the kernel and in memory: a failed write must not turn it
   * into a reported failure (it did happen); it is logged and the next write carries it.
   */
  async persistOrLog(): Promise<void> {
    await this.persist().catch((err: unknown) => this.log.error({ err }, "state not saved; the next write will carry this change"));
  }

  /** A change that need not be durable at once (deadlines are in the kernel map anyway). */
  saveSoon(): void {
    this.writer.saveSoon();
  }

  snapshot(): StoreSnapshot {
    const attachments = [...this.registry.records.values()].map((r) => (r.stored ??= recordToStored(r)));
    attachments.push(...this.registry.unadopted.values());
    return { version: 1, daemonId: this.daemonIdValue, attachments };
  }

  stop(): void {
    this.writer.stop();
  }
}
