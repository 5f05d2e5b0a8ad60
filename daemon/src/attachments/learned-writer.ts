import type { Logger } from "pino";
import { NetfenceError } from "@netfence/proto/errors";
import type { Filter } from "../datapath/filter.js";
import { formatAddr } from "@netfence/proto/parse";
import { hostText } from "../policy/learned-addresses.js";
import type { LearnedAddressSink, LearnedItem, LearnOutcome, RefusedAddress } from "../dns/learned-sink.js";
import type { AttachmentRecord } from "./attachment-record.js";
import type { LearnedGuard, LearnedRefusal } from "../plan/learned-guard.js";
import { planLearned } from "../plan/learned-plan.js";
import { planRecheck, type RecheckOptions } from "../plan/learned-recheck.js";
import { planExpiry } from "../plan/expiry-plan.js";
import type { OpQueue } from "./op-queue.js";

/**
 * The DNS-learned half of the single writer, the data-path side of the DNS answer → kernel seam
 * (dns/learned-sink.ts): records what DNS answers produced (THE coalescer: every attachment's
 * writes of one turn of the event loop become one queued operation, one upsert per attachment),
 * refuses what the rebinding
 * guard or the learned-address quota refuse, re-checks learned addresses when what they depend
 * on changes, and reports every refusal (log throttled, metric, event) through `onRefused`.
 * It runs inside the manager's OpQueue and only touches records the manager hands it.
 */

export interface LearnedRefusalReport {
  readonly attachmentId: string;
  readonly name: string;
  /** Canonical address text, without prefix length. */
  readonly address: string;
  readonly reason: LearnedRefusal;
  /** "answer": refused when a DNS answer produced it; "recheck": removed later (policy or host changed). */
  readonly when: "answer" | "recheck";
  /**
   * Addresses this report stands for (default 1). Quota refusals of one name in one batch are
   * reported once (`address` the first): a tenant at its quota must not cost a report per address.
   */
  readonly count?: number;
}

export interface LearnedWriterHost {
  readonly queue: OpQueue;
  readonly filter: Filter;
  record(id: string): AttachmentRecord | undefined;
  records(): Iterable<AttachmentRecord>;
  /** A change that need not be durable at once (deadlines are in the kernel map anyway). */
  saveSoon(): void;
  now(): number;
}

export interface LearnedWriterOptions {
  /** null: no rebinding guard (unit tests of other parts only; the daemon always has one). */
  readonly guard: LearnedGuard | null;
  /** The learned-address quota of an attachment (distinct addresses). */
  readonly learnedQuota: (rec: AttachmentRecord) => number;
  readonly onRefused?: (report: LearnedRefusalReport) => void;
  /** Every answer batch of one attachment: kernel entries opened or extended, refusals by reason (the audit trail's DNS aggregate). */
  readonly onLearned?: (attachmentId: string, names: readonly string[], added: number, refused: readonly { reason: string; count: number }[]) => void;
  readonly logger: Logger;
}

interface PendingInsert {
  readonly id: string;
  readonly items: readonly LearnedItem[];
  readonly resolve: (outcome: LearnOutcome) => void;
  readonly reject: (err: unknown) => void;
}

/** One info line per (attachment, reason) per this interval; the rest at debug. */
const LOG_EVERY_MS = 10_000;

export class LearnedWriter implements LearnedAddressSink {
  private pending: PendingInsert[] = [];
  private readonly lastLogged = new Map<string, number>();

  constructor(
    private readonly host: LearnedWriterHost,
    private readonly opts: LearnedWriterOptions,
  ) {}

  get guard(): LearnedGuard | null {
    return this.opts.guard;
  }

  epoch(attachmentId: string): number {
    return this.host.record(attachmentId)?.state.learned.epoch ?? -1;
  }

  /**
   * Records the addresses DNS answers produced and makes sure the kernel allows the ones that may
   * be opened; resolves (with the refused ones) once they are in the map.
   */
  write(attachmentId: string, items: readonly LearnedItem[]): Promise<LearnOutcome> {
    return new Promise<LearnOutcome>((resolve, reject) => {
      this.pending.push({ id: attachmentId, items, resolve, reject });
      if (this.pending.length === 1) {
        setImmediate(() => {
          const batch = this.pending;
          this.pending = [];
          this.host.queue.run("learned-write", () => this.insert(batch)).catch((err: unknown) => {
            for (const p of batch) p.reject(err);
          });
        });
      }
    });
  }

  private async insert(batch: readonly PendingInsert[]): Promise<void> {
    const byId = new Map<string, PendingInsert[]>();
    for (const p of batch) {
      if (this.host.record(p.id) === undefined) {
        p.reject(new NetfenceError("NOT_FOUND", `no attachment with id "${p.id}"`, { details: { id: p.id } }));
        continue;
      }
      const list = byId.get(p.id) ?? [];
      list.push(p);
      byId.set(p.id, list);
    }
    let changed = false;
    for (const [id, inserts] of byId) {
      const rec = this.host.record(id)!;
      const quota = this.opts.learnedQuota(rec);
      const answers = inserts.flatMap((p) => p.items);
      const incoming = answers.reduce((n, a) => n + a.addresses.length, 0);
      // Over the quota: expired addresses are collected first, so only live ones count.
      if (rec.state.learned.size + incoming > quota && rec.state.nextExpiryMs <= this.host.now()) {
        changed = (await this.collectExpired(rec)) || changed;
      }
      const now = this.host.now();
      const plan = planLearned(rec.state, answers, now, { learnedQuota: quota, guard: this.opts.guard });
      try {
        if (plan.upserts.length > 0) await this.host.filter.upsertEntries(id, plan.upserts);
      } catch (err) {
        for (const p of inserts) p.reject(err);
        continue;
      }
      plan.commit();
      if (plan.additions > 0) {
        rec.stored = null;
        changed = true;
      }
      const refusedByName = new Map<string, RefusedAddress[]>();
      const overQuota = new Map<string, { address: string; count: number }>();
      for (const r of plan.refused) {
        const list = refusedByName.get(r.name) ?? [];
        list.push(r);
        refusedByName.set(r.name, list);
        if (r.reason === "quota") {
          const q = overQuota.get(r.name);
          if (q === undefined) overQuota.set(r.name, { address: formatAddr(r.address.family, r.address.addr), count: 1 });
          else q.count++;
        } else {
          this.report({ attachmentId: id, name: r.name, address: formatAddr(r.address.family, r.address.addr), reason: r.reason, when: "answer" });
        }
      }
      for (const [name, q] of overQuota) this.report({ attachmentId: id, name, address: q.address, reason: "quota", when: "answer", count: q.count });
      if (this.opts.onLearned !== undefined && (plan.upserts.length > 0 || plan.refused.length > 0)) {
        const reasons = new Map<string, number>();
        for (const r of plan.refused) reasons.set(r.reason, (reasons.get(r.reason) ?? 0) + 1);
        const names = [...new Set(answers.map((a) => a.name))];
        this.opts.onLearned(id, names, plan.upserts.length, [...reasons].map(([reason, count]) => ({ reason, count })));
      }
      for (const p of inserts) {
        let held = Infinity;
        for (const item of p.items) held = Math.min(held, plan.heldUntilMs.get(item.name) ?? Infinity);
        p.resolve({ refused: p.items.flatMap((item) => refusedByName.get(item.name) ?? []), heldUntilMs: held });
      }
    }
    if (changed) this.host.saveSoon();
  }

  /** Removes expired learned addresses (and rules) of one attachment; true when something changed. Runs in the queue. */
  async collectExpired(rec: AttachmentRecord): Promise<boolean> {
    const now = this.host.now();
    const plan = planExpiry(rec.state, now);
    if (plan === null) return false;
    if (plan.deletes.length > 0) await this.host.filter.deleteEntries(rec.id, plan.deletes);
    if (plan.upserts.length > 0) await this.host.filter.upsertEntries(rec.id, plan.upserts);
    plan.commit();
    rec.stored = null;
    return true;
  }

  /**
   * Removes the learned addresses of `rec` that the guard refuses now (a rule expired, the host's
   * addresses changed, the daemon restarted with another protected-deny set). Runs in the queue.
   * Returns how many learned records went.
   */
  async recheck(rec: AttachmentRecord, opts: RecheckOptions = {}): Promise<number> {
    if (this.opts.guard === null || rec.state.learned.size === 0) return 0;
    const plan = planRecheck(rec.state, this.opts.guard, this.host.now(), opts);
    if (plan === null) return 0;
    // Both only close: the order does not open anything in between.
    if (plan.upserts.length > 0) await this.host.filter.upsertEntries(rec.id, plan.upserts);
    if (plan.deletes.length > 0) await this.host.filter.deleteEntries(rec.id, plan.deletes);
    plan.commit();
    rec.stored = null;
    for (const r of plan.refused) this.report({ attachmentId: rec.id, name: r.name, address: hostText(r.key), reason: r.reason, when: "recheck" });
    this.host.saveSoon();
    return plan.refused.length;
  }

  /** Every attachment, in the queue (host addresses changed, start-up). */
  recheckAll(): Promise<number> {
    return this.host.queue.run("learned-recheck", async () => {
      let n = 0;
      for (const rec of this.host.records()) {
        try {
          n += await this.recheck(rec);
        } catch (err) {
          this.opts.logger.warn({ attachmentId: rec.id, err }, "re-checking learned addresses failed; retrying later");
        }
      }
      return n;
    });
  }

  /** Log (throttled per attachment and reason) and hand the refusal on (metric, event). */
  report(r: LearnedRefusalReport): void {
    this.opts.onRefused?.(r);
    const key = `${r.attachmentId}|${r.reason}`;
    const now = Date.now();
    const last = this.lastLogged.get(key);
    const fields = { attachmentId: r.attachmentId, name: r.name, address: r.address, reason: r.reason, when: r.when, count: r.count ?? 1 };
    const message = r.when === "answer" ? "DNS answer address not opened (rebinding guard / quota)" : "learned address removed: the rebinding guard refuses it now";
    if (last !== undefined && now - last < LOG_EVERY_MS) {
      this.opts.logger.debug(fields, message);
      return;
    }
    if (this.lastLogged.size >= 4096) this.lastLogged.clear();
    this.lastLogged.set(key, now);
    this.opts.logger.warn(fields, message);
  }
}
