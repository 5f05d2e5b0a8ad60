import type { Logger } from "pino";
import type { AdoptedAttachment, Filter } from "../datapath/filter.js";
import { loadPolicy, type StoredAttachment } from "../store/snapshot.js";
import type { AttachmentRecord } from "./attachment-record.js";
import { learnedFromStored } from "./learned-store.js";
import { PolicyState } from "./policy-state.js";
import { targetAlive, targetKey } from "./target.js";
import { storedAttachOptions } from "./attach-options.js";

/**
 * Start-up reconciliation of the state store with the pins in bpffs (after a restart or a
 * kill -9 at any moment):
 * - stored and pinned, target alive → adopted (same id, slot, DNS port, policy, deadlines); if
 *   the kernel's mode differs from the store (a crash between a kernel change and its save), the
 *   stored policy is re-applied atomically;
 * - stored, pinned, but not adoptable → reported and left in place (never silently replaced);
 * - stored but unpinned, or target gone → dropped (reported as removed; the pins are detached);
 * - pinned but unknown to the store (an attach interrupted before it completed) → detached.
 * Filter calls are pipelined (the loader answers them in turn), so restart-to-ready stays short
 * with many attachments; the caller runs this as one operation of its queue.
 */
export interface ReconcileResult {
  readonly records: AttachmentRecord[];
  readonly unadopted: StoredAttachment[];
  readonly removed: string[];
  readonly orphans: string[];
}

export interface ReconcileOptions {
  readonly filter: Filter;
  readonly logger: Logger;
  readonly stored: readonly StoredAttachment[];
  readonly dnsAddress: (port: number) => string;
  readonly nowMs: number;
  readonly concurrency?: number;
}

export async function reconcile(opts: ReconcileOptions): Promise<ReconcileResult> {
  const { filter, logger: log } = opts;
  const limit = opts.concurrency ?? 32;
  const pinned = new Set(await filter.listPinned());
  const result: ReconcileResult = { records: [], unadopted: [], removed: [], orphans: [] };
  const candidates: StoredAttachment[] = [];
  const vanished: StoredAttachment[] = [];
  for (const stored of opts.stored) {
    if (!pinned.has(stored.id)) {
      log.warn({ attachmentId: stored.id }, "stored attachment has no pins any more; dropping it");
      result.removed.push(stored.id);
      continue;
    }
    pinned.delete(stored.id);
    if (targetAlive(stored.target, stored.ifindex)) candidates.push(stored);
    else vanished.push(stored);
  }
  await mapLimit(vanished, limit, async (stored) => {
    log.warn({ attachmentId: stored.id, target: stored.targetText }, "target vanished while the daemon was down; detaching");
    await filter.detach(stored.id).catch((err: unknown) => log.warn({ attachmentId: stored.id, err }, "detach of vanished target failed"));
    result.removed.push(stored.id);
  });
  await mapLimit(candidates, limit, async (stored) => {
    try {
      const adopted = await filter.adopt(stored.id);
      const rec = toRecord(stored, adopted, opts.dnsAddress(stored.dnsPort), log);
      if (adopted.mode !== rec.state.mode || adopted.audit !== rec.state.audit) {
        await filter.replacePolicy(rec.id, rec.state.compile(opts.nowMs));
      }
      result.records.push(rec);
    } catch (err) {
      log.error({ attachmentId: stored.id, err, target: stored.targetText }, "pinned attachment cannot be adopted; left in place and kept for the next start");
      result.unadopted.push(stored);
    }
  });
  await mapLimit([...pinned], limit, async (id) => {
    log.warn({ attachmentId: id }, "pinned attachment unknown to the state store; removing it");
    try {
      await filter.detach(id);
    } catch {
      await filter
        .adopt(id)
        .then(() => filter.detach(id))
        .catch((err: unknown) => log.error({ attachmentId: id, err }, "cannot remove orphaned pins"));
    }
    result.orphans.push(id);
  });
  return result;
}

function toRecord(stored: StoredAttachment, adopted: AdoptedAttachment, dnsAddress: string, log: Logger): AttachmentRecord {
  const { options, problem } = storedAttachOptions(stored.metadata, stored.target.kind);
  if (problem !== null) log.warn({ attachmentId: stored.id, problem }, "stored attach options are not valid any more; the closed defaults apply");
  const learned = learnedFromStored(stored);
  return {
    id: stored.id,
    slot: adopted.slot,
    target: stored.target,
    key: targetKey(stored.target),
    targetText: stored.targetText,
    dnsPort: stored.dnsPort,
    dnsAddress,
    metadata: stored.metadata,
    options,
    attachedAtMs: stored.attachedAtMs,
    method: adopted.method,
    ifindex: stored.ifindex,
    state: new PolicyState(loadPolicy(stored.policy), learned),
    dns: null,
    stored: null,
  };
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function mapLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
