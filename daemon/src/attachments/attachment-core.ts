import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Filter } from "../datapath/filter.js";
import type { LearnedGuard } from "../plan/learned-guard.js";
import type { StateStore } from "../store/state-store.js";
import { OpQueue } from "./op-queue.js";
import { AttachmentRegistry } from "./registry.js";
import { Persistence } from "./persistence.js";
import { LearnedWriter, type LearnedRefusalReport } from "./learned-writer.js";
import { quotasOf, type AttachmentDnsConfig } from "./attachment-resources.js";
import { PolicyHistory } from "../history/policy-history.js";

export interface AttachmentCoreOptions {
  readonly filter: Filter;
  readonly store: StateStore;
  readonly logger: Logger;
  readonly dns: AttachmentDnsConfig;
  /** The DNS rebinding guard applied to every learned address; absent: none (unit tests of other parts). */
  readonly learnedGuard?: LearnedGuard;
  /** Every learned address refused or removed by the guard or the quota (metrics, events). */
  readonly onLearnedRefused?: (report: LearnedRefusalReport) => void;
  readonly now?: () => number;
  readonly newId?: () => string;
  /** The audit trail of policy changes (app.ts opens it in data_dir); absent: one in memory. */
  readonly history?: PolicyHistory;
  /** Every command that reached the kernel: planning and kernel time (the apply-phase histogram). */
  readonly onCommandTimings?: (planMs: number, kernelMs: number) => void;
}

/**
 * What every part of the single writer shares, built first (app.ts hands `learned`, the DNS
 * answer → kernel sink, to the DNS server factory before the manager exists): the queue, the
 * registry, persistence, the filter, and the learned-address writer (learned-address lifetime).
 */
export class AttachmentCore {
  readonly queue = new OpQueue();
  readonly registry: AttachmentRegistry;
  readonly persistence: Persistence;
  readonly learned: LearnedWriter;
  readonly filter: Filter;
  readonly log: Logger;
  readonly now: () => number;
  readonly history: PolicyHistory;
  readonly onCommandTimings: ((planMs: number, kernelMs: number) => void) | undefined;

  constructor(opts: AttachmentCoreOptions) {
    this.filter = opts.filter;
    this.log = opts.logger.child({ component: "attachments" });
    const now = opts.now ?? Date.now;
    this.now = now;
    this.history = opts.history ?? PolicyHistory.inMemory(this.log);
    this.onCommandTimings = opts.onCommandTimings;
    const history = this.history;
    this.registry = new AttachmentRegistry(opts.newId ?? (() => `nf-${randomBytes(6).toString("hex")}`));
    this.persistence = new Persistence(opts.store, this.registry, this.log);
    const persistence = this.persistence;
    const registry = this.registry;
    this.learned = new LearnedWriter(
      {
        queue: this.queue,
        filter: opts.filter,
        record: (id) => registry.record(id),
        records: () => registry.records.values(),
        saveSoon: () => persistence.saveSoon(),
        now,
      },
      {
        guard: opts.learnedGuard ?? null,
        learnedQuota: (rec) => quotasOf(opts.dns.quotas, rec).learned,
        onRefused: opts.onLearnedRefused,
        onLearned: (id, names, added, refused) => history.dnsLearned.note(id, names, added, refused),
        logger: this.log,
      },
    );
  }
}
