import type { Logger } from "pino";
import type { StateStore } from "../store/state-store.js";
import type { StoreSnapshot } from "../store/snapshot.js";

/**
 * Writes the manager's snapshot to the store, coalescing: `save()` resolves after a write that
 * started after the call (concurrent callers share it, and a burst of 10k commands costs one
 * write); `saveSoon()` schedules one within a second for changes that need not be durable at
 * once (DNS-learned addresses and TTL collection: their deadlines are in the kernel map anyway).
 */
export class SnapshotWriter {
  private chain: Promise<void> = Promise.resolve();
  private queued: Promise<void> | null = null;
  private soonTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private lastStart = 0;

  constructor(
    private readonly store: StateStore,
    private readonly snapshot: () => StoreSnapshot,
    private readonly logger: Logger,
    private readonly soonMs = 1000,
    private readonly minIntervalMs = 0,
  ) {}

  save(): Promise<void> {
    if (this.queued !== null) return this.queued;
    // Group commit: wait one macrotask so changes made in the same turn share the write; while a
    // write is in flight, every later call shares the one queued after it, so a burst of commands
    // costs a few writes instead of one per command (the snapshot is O(state)). A lone command
    // waits for exactly one write: no fixed spacing (minIntervalMs = 25 put ~25 ms on every
    // sequential command's round trip).
    const p = this.chain
      .then(() => {
        const wait = this.lastStart + this.minIntervalMs - Date.now();
        return new Promise<void>((r) => (wait > 0 ? setTimeout(r, wait) : setImmediate(r)));
      })
      .then(() => {
        this.queued = null;
        this.lastStart = Date.now();
        return this.store.save(this.snapshot());
      });
    this.queued = p;
    this.chain = p.catch((err: unknown) => {
      this.logger.error({ err }, "state store write failed");
    });
    return p;
  }

  saveSoon(): void {
    if (this.soonTimer !== null || this.stopped) return;
    this.soonTimer = setTimeout(() => {
      this.soonTimer = null;
      this.save().catch(() => undefined);
    }, this.soonMs);
    this.soonTimer.unref();
  }

  /** Cancels a pending saveSoon (call save() afterwards for a final write). */
  stop(): void {
    this.stopped = true;
    if (this.soonTimer !== null) clearTimeout(this.soonTimer);
    this.soonTimer = null;
  }
}
