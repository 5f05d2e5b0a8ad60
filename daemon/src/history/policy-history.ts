import type { Logger } from "pino";
import type { HistoryEntry, HistoryRecord } from "./history-entry.js";
import { HistoryFile } from "./history-file.js";
import { DnsLearnedAggregate } from "./dns-learned-aggregate.js";

export interface PolicyHistoryOptions {
  /** data_dir; null = kept in memory only (a daemon without data_dir, unit tests). */
  readonly dir: string | null;
  /** history.max_entries: entries kept (newest). */
  readonly maxEntries: number;
  /** history.max_age: entries older than this are dropped. */
  readonly maxAgeMs: number;
  readonly logger: Logger;
  readonly now?: () => number;
  /** Every entry recorded (the metric `netfence_policy_changes_total{source,result}`). */
  readonly onRecord?: (entry: HistoryEntry) => void;
  /** Period of the DNS-learned aggregate entries (default 60 s). */
  readonly dnsAggregateMs?: number;
  /** How long entries gather before one append + fdatasync (default 100 ms). */
  readonly writeDelayMs?: number;
}

export interface HistoryQuery {
  readonly attachmentId?: string;
  readonly sinceMs?: number;
  /** The newest `limit` matching entries; absent/0 = all kept. */
  readonly limit?: number;
}

/**
 * The audit trail of policy changes: the entries kept in memory (for queries) and appended to
 * history.journal in the background. `record` never waits for the disk: it returns at once and
 * the entries of the next 100 ms go to the file in one append + fdatasync, after the commands'
 * CommandResults are out (a push of 500 BulkUpdates is a few appends, not 500 page rewrites). A write failure is logged and counted, never thrown into the
 * path that changed the policy (the change itself is durable in the state store regardless).
 */
export class PolicyHistory {
  private entries: HistoryEntry[] = [];
  private nextSeq: number;
  private pending: HistoryEntry[] = [];
  private writing: Promise<void> | null = null;
  private scheduled = false;
  private closed = false;
  /** Failed appends/rewrites since start (logged; `netfenced status` could show it). */
  writeErrors = 0;
  readonly dnsLearned: DnsLearnedAggregate;
  private readonly now: () => number;

  private constructor(
    private readonly opts: PolicyHistoryOptions,
    private readonly file: HistoryFile | null,
    loaded: HistoryEntry[],
  ) {
    this.now = opts.now ?? Date.now;
    this.nextSeq = loaded.reduce((m, e) => Math.max(m, e.seq), 0) + 1;
    this.entries = loaded;
    this.prune();
    this.dnsLearned = new DnsLearnedAggregate((r) => this.record(r), opts.dnsAggregateMs ?? 60_000);
  }

  static async open(opts: PolicyHistoryOptions): Promise<PolicyHistory> {
    if (opts.dir === null) return new PolicyHistory(opts, null, []);
    const { file, read } = await HistoryFile.open(opts.dir);
    if (read.tornBytes > 0 || read.badLines > 0) {
      opts.logger.warn({ tornBytes: read.tornBytes, badLines: read.badLines }, "history.journal: a torn or corrupt line was skipped");
    }
    const history = new PolicyHistory(opts, file, read.entries);
    return history;
  }

  /** Memory only (unit tests of other parts, a core built without one). */
  static inMemory(logger: Logger, maxEntries = 10_000): PolicyHistory {
    return new PolicyHistory({ dir: null, maxEntries, maxAgeMs: 30 * 24 * 3600_000, logger }, null, []);
  }

  /** Records one change; returns at once (the write follows). */
  record(r: HistoryRecord): HistoryEntry {
    const entry: HistoryEntry = {
      seq: this.nextSeq++,
      timeMs: r.timeMs ?? this.now(),
      attachmentId: r.attachmentId,
      source: r.source,
      action: r.action,
      commandId: r.commandId ?? "",
      controlPlane: r.controlPlane ?? "",
      summary: r.summary,
      result: r.result,
      error: r.error ?? "",
      skipped: r.skipped ?? [],
    };
    this.entries.push(entry);
    if (this.entries.length > this.opts.maxEntries + Math.max(16, this.opts.maxEntries >> 4)) this.prune();
    this.opts.onRecord?.(entry);
    if (this.file !== null && !this.closed) {
      this.pending.push(entry);
      this.schedule();
    }
    return entry;
  }

  /** Entries kept now (within the count bound; the age bound applies when queried). */
  get size(): number {
    return Math.min(this.entries.length, this.opts.maxEntries);
  }

  /** Kept entries, oldest first, filtered. */
  query(q: HistoryQuery = {}): HistoryEntry[] {
    const cutoff = Math.max(q.sinceMs ?? 0, this.now() - this.opts.maxAgeMs);
    const out: HistoryEntry[] = [];
    const start = Math.max(0, this.entries.length - this.opts.maxEntries);
    for (let i = start; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      if (e.timeMs < cutoff) continue;
      if (q.attachmentId !== undefined && q.attachmentId !== "" && e.attachmentId !== q.attachmentId) continue;
      out.push(e);
    }
    const limit = q.limit ?? 0;
    return limit > 0 && out.length > limit ? out.slice(out.length - limit) : out;
  }

  /** Resolves once everything recorded so far is in the file. */
  async flush(): Promise<void> {
    while (this.writing !== null || this.pending.length > 0) {
      if (this.writing === null) this.startWrite();
      await this.writing;
    }
  }

  /** Writes the pending DNS aggregates and entries, then closes the file. */
  async close(): Promise<void> {
    this.dnsLearned.close();
    await this.flush();
    this.closed = true;
    await this.file?.close();
  }

  private schedule(): void {
    if (this.scheduled || this.writing !== null) return;
    this.scheduled = true;
    setTimeout(() => {
      this.scheduled = false;
      if (this.writing === null) this.startWrite();
    }, this.opts.writeDelayMs ?? 100).unref();
  }

  private startWrite(): void {
    const file = this.file;
    if (file === null || this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.writing = (async () => {
      try {
        await file.append(batch);
        if (file.lines > this.opts.maxEntries + Math.max(50, this.opts.maxEntries >> 1)) {
          this.prune();
          // Entries recorded meanwhile are still pending: they are appended after the rewrite.
          const lastSeq = batch[batch.length - 1]!.seq;
          let end = this.entries.length;
          while (end > 0 && this.entries[end - 1]!.seq > lastSeq) end--;
          await file.rewrite(this.entries.slice(Math.max(0, end - this.opts.maxEntries), end));
        }
      } catch (err) {
        this.writeErrors++;
        this.opts.logger.warn({ err, entries: batch.length }, "writing history.journal failed; the entries stay in memory");
      }
    })().finally(() => {
      this.writing = null;
      if (this.pending.length > 0) this.schedule();
    });
  }

  /** Drops entries past the count and age bounds (oldest first). */
  private prune(): void {
    const cutoff = this.now() - this.opts.maxAgeMs;
    let drop = Math.max(0, this.entries.length - this.opts.maxEntries);
    while (drop < this.entries.length && this.entries[drop]!.timeMs < cutoff) drop++;
    if (drop > 0) this.entries = this.entries.slice(drop);
  }
}
