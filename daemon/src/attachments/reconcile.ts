import type { Logger } from "pino";
import { restoreRuleIds, zeroAllRuleHits } from "./rule-ids-restore.js";
import type { AdoptedAttachment, AttachResult, Filter, FilterPolicy, TargetSpec } from "../datapath/filter.js";
import { loadPolicy, type StoredAttachment } from "../store/snapshot.js";
import type { AttachmentRecord } from "./attachment-record.js";
import { learnedFromStored } from "./learned-store.js";
import { PolicyState } from "../policy/policy-state.js";
import { RuleOrigins } from "../policy/rule-origins.js";
import { isCgroupDir, targetKey } from "./target.js";
import { interfaceIndex } from "../datapath/interface-index.js";
import { storedAttachOptions, type AttachOptions } from "./attach-options.js";
import { inspectOrphan, orphanKey, type OrphanInfo } from "./orphan.js";
import { isPinnedLayoutError } from "../datapath/filter.js";
import { migrateStored, recoverMigrations } from "./migration.js";

/**
 * Start-up reconciliation of the state store with the pins in bpffs (after a restart, a kill -9
 * at any moment, or a reboot that emptied bpffs). Enforcement is never removed because the
 * daemon lost its memory:
 * - stored and pinned, target there → adopted (same id, slot, DNS port, policy, deadlines); a
 *   filter that is pinned but no longer attached (clsact filter deleted, link detached or
 *   unpinned, interface re-created with the same name) is attached again; if the kernel's mode
 *   differs from the store (a crash between a kernel change and its save), the stored policy is
 *   re-applied atomically;
 * - stored, not pinned (a reboot), target there again (an interface re-created with the same
 *   name, a cgroup re-created) → re-created with the same id, slot, DNS port, policy, TTL
 *   deadlines and learned addresses — unless `restore` is off, or its slot, port or target is
 *   held by a pinned attachment (then dropped and reported);
 * - stored and pinned with another layout (an upgrade changed NF_LAYOUT_VERSION) → migrated
 *   (migration.ts: re-created beside the old program, then the old one detached); if that fails,
 *   rolled back and left as below;
 * - stored, pinned, but not adoptable, or its re-creation failed → reported, kept in the store
 *   for the next start (left in place when pinned: still enforcing);
 * - stored, target gone → dropped (reported as removed; its pins are detached);
 * - pinned but unknown to the store → an orphan: kept enforcing and reported; only pins of an
 *   attach that never linked (they enforce nothing) are removed.
 * Filter calls are pipelined (the loader answers them in turn), so restart-to-ready stays short
 * with many attachments; the caller runs this as one operation of its queue.
 */
export interface ReconcileResult {
  readonly records: AttachmentRecord[];
  readonly unadopted: StoredAttachment[];
  readonly removed: string[];
  readonly orphans: OrphanInfo[];
  /** Adopted attachments whose filter had to be attached again. */
  readonly relinked: string[];
  /** Re-created from the store after their pins were gone. */
  readonly recreated: string[];
  /** Pins of attaches that never linked, removed. */
  readonly cleaned: string[];
  /** Pins of another layout re-created in this layout (migration.ts). */
  readonly migrated: string[];
  /** Lines for DaemonStatus warnings (migrations done or refused). */
  readonly warnings: string[];
}

export interface ReconcileOptions {
  readonly filter: Filter;
  readonly logger: Logger;
  readonly stored: readonly StoredAttachment[];
  readonly dnsAddress: (port: number) => string;
  readonly nowMs: number;
  readonly concurrency?: number;
  /** Re-create stored attachments whose pins are gone (default true). */
  readonly restore?: boolean;
  /** Where cgroup ids of orphans are looked up; null = no cgroup2 mount. */
  readonly cgroupRoot?: string | null;
  /** Attaches afresh (the manager's attach spec: DNS address, port range, guards, method). */
  readonly recreate: (stored: StoredAttachment, options: AttachOptions, policy: FilterPolicy) => Promise<AttachResult>;
  /** Attaches an adopted filter again where its target is now. */
  readonly relink: (stored: StoredAttachment, options: AttachOptions) => Promise<AttachResult>;
}

export async function reconcile(opts: ReconcileOptions): Promise<ReconcileResult> {
  const { filter, logger: log } = opts;
  const limit = opts.concurrency ?? 32;
  // A migration a crash interrupted: old pins set aside without a new attachment go back first.
  const unfinished = await recoverMigrations(filter, log, new Set(await filter.listPinned()));
  const pinned = new Set(await filter.listPinned());
  const result: ReconcileResult = { records: [], unadopted: [], removed: [], orphans: [], relinked: [], recreated: [], cleaned: [], migrated: [], warnings: [] };
  const stale: StoredAttachment[] = [];
  const candidates: StoredAttachment[] = [];
  const vanished: StoredAttachment[] = [];
  const unpinned: StoredAttachment[] = [];
  for (const stored of opts.stored) {
    const there = targetPresent(stored.target);
    if (!pinned.has(stored.id)) {
      if (there && opts.restore !== false) unpinned.push(stored);
      else {
        log.warn({ attachmentId: stored.id, target: stored.targetText }, there ? "stored attachment has no pins any more and restore is off; dropping it" : "stored attachment has no pins any more and its target is gone; dropping it");
        result.removed.push(stored.id);
      }
      continue;
    }
    pinned.delete(stored.id);
    if (there) candidates.push(stored);
    else vanished.push(stored);
  }
  await mapLimit(vanished, limit, async (stored) => {
    log.warn({ attachmentId: stored.id, target: stored.targetText }, "target vanished while the daemon was down; detaching");
    await filter.detach(stored.id).catch((err: unknown) => log.warn({ attachmentId: stored.id, err }, "detach of vanished target failed"));
    result.removed.push(stored.id);
  });
  await mapLimit(candidates, limit, async (stored) => {
    try {
      let adopted = await filter.adopt(stored.id);
      const ifindex = stored.target.kind === "interface" ? (interfaceIndex(stored.target.name) ?? 0) : 0;
      const { options, problem } = storedAttachOptions(stored.metadata, stored.target.kind);
      if (problem !== null) log.warn({ attachmentId: stored.id, problem }, "stored attach options are not valid any more; the closed defaults apply");
      if (!adopted.attached || (ifindex !== 0 && stored.ifindex !== 0 && ifindex !== stored.ifindex)) {
        log.warn({ attachmentId: stored.id, target: stored.targetText, method: adopted.method }, "pinned filter is not attached any more (filter deleted, link detached or interface re-created); attaching it again");
        const r = await opts.relink(stored, options);
        adopted = { ...adopted, method: r.method, ifindex: r.ifindex, attached: true };
        result.relinked.push(stored.id);
        log.info({ attachmentId: stored.id, method: r.method }, "filter attached again");
      }
      const rec = toRecord(stored, adopted, opts.dnsAddress(stored.dnsPort), options, ifindex);
      await restoreRuleIds(filter, rec.id, rec.state, opts.nowMs).catch(async (err: unknown) => {
        log.warn({ attachmentId: rec.id, err }, "rule ids not restored from the kernel; rule hit counts restart");
        await zeroAllRuleHits(filter, rec.id).catch((e: unknown) => log.warn({ attachmentId: rec.id, err: e }, "rule hit counters not zeroed"));
      });
      if (adopted.mode !== rec.state.mode || adopted.audit !== rec.state.audit) {
        await filter.replacePolicy(rec.id, rec.state.compile(opts.nowMs));
      }
      result.records.push(rec);
    } catch (err) {
      if (isPinnedLayoutError(err)) {
        stale.push(stored);
        return;
      }
      log.error({ attachmentId: stored.id, err, target: stored.targetText }, "pinned attachment cannot be adopted; left in place and kept for the next start");
      result.unadopted.push(stored);
    }
  });
  for (const id of unfinished) {
    if (!result.records.some((r) => r.id === id)) continue;
    await filter.finishMigration(id).then(
      () => log.info({ attachmentId: id }, "an interrupted migration finished: the old program is detached"),
      (err: unknown) => log.error({ attachmentId: id, err }, "an interrupted migration could not detach the old program"),
    );
  }
  // Orphans: kept enforcing, reported. Read before re-creating, whose slots, ports and targets they may hold.
  await mapLimit([...pinned], limit, async (id) => {
    const o = await inspectOrphan(filter, id, opts.cgroupRoot ?? null);
    if (o === "never-attached") {
      log.warn({ attachmentId: id }, "pins of an attach that never completed (never attached, enforcing nothing); removing them");
      await filter.detach(id).catch((err: unknown) => log.error({ attachmentId: id, err }, "cannot remove the pins of an incomplete attach"));
      result.cleaned.push(id);
      return;
    }
    log.error(
      { attachmentId: id, target: o.targetText, mode: o.mode, attached: o.attached, entries: o.entries, problem: o.problem },
      "pinned attachment unknown to the state store: kept enforcing; `netfenced adopt` re-registers it, `netfenced detach --orphan` removes it",
    );
    result.orphans.push(o);
  });
  for (const stored of stale) await migrate(opts, stored, result);
  await recreateUnpinned(opts, unpinned, result);
  return result;
}

/** A stored attachment whose pins are of another layout: migrated, or left unadopted (rolled back). */
async function migrate(opts: ReconcileOptions, stored: StoredAttachment, result: ReconcileResult): Promise<void> {
  const log = opts.logger;
  const { options, problem } = storedAttachOptions(stored.metadata, stored.target.kind);
  if (problem !== null) log.warn({ attachmentId: stored.id, problem }, "stored attach options are not valid any more; the closed defaults apply");
  const ifindex = stored.target.kind === "interface" ? (interfaceIndex(stored.target.name) ?? 0) : 0;
  const draft = toRecord(stored, { id: stored.id, slot: stored.slot, kind: stored.target.kind, method: stored.method, ifindex, mode: "block-all", audit: false, attached: false }, opts.dnsAddress(stored.dnsPort), options, ifindex);
  try {
    const { result: r, warning } = await migrateStored({ filter: opts.filter, logger: log, recreate: opts.recreate }, stored, options, draft.state.compile(opts.nowMs));
    result.records.push({ ...draft, method: r.method, ifindex: r.ifindex || ifindex });
    result.migrated.push(stored.id);
    result.warnings.push(warning);
  } catch (err) {
    log.error({ attachmentId: stored.id, err, target: stored.targetText }, "pins of another layout could not be migrated; left in place (still enforcing, unmanaged) and kept for the next start");
    result.warnings.push(`attachment ${stored.id} (${stored.targetText}): pins of another layout could not be migrated (${err instanceof Error ? err.message : String(err)}); the old filter keeps enforcing, unmanaged, without its DNS server`);
    result.unadopted.push(stored);
  }
}

/** Re-creates stored attachments whose pins are gone (a reboot), one at a time, avoiding what pinned ones hold. */
async function recreateUnpinned(opts: ReconcileOptions, unpinned: readonly StoredAttachment[], result: ReconcileResult): Promise<void> {
  const log = opts.logger;
  const slots = new Set<number>();
  const ports = new Set<number>();
  const keys = new Set<string>();
  for (const r of result.records) {
    slots.add(r.slot);
    ports.add(r.dnsPort);
    keys.add(r.key);
  }
  for (const s of result.unadopted) {
    slots.add(s.slot);
    ports.add(s.dnsPort);
    keys.add(targetKey(s.target));
  }
  for (const o of result.orphans) {
    slots.add(o.slot);
    if (o.dnsPort !== 0) ports.add(o.dnsPort);
    const k = orphanKey(o);
    if (k !== null) keys.add(k);
  }
  for (const stored of unpinned) {
    const key = targetKey(stored.target);
    const clash = slots.has(stored.slot) ? `slot ${stored.slot}` : ports.has(stored.dnsPort) ? `DNS port ${stored.dnsPort}` : keys.has(key) ? `target ${stored.targetText}` : null;
    if (clash !== null) {
      log.error({ attachmentId: stored.id, target: stored.targetText }, `stored attachment cannot be re-created: its ${clash} is held by a pinned attachment; dropping it`);
      result.removed.push(stored.id);
      continue;
    }
    const { options, problem } = storedAttachOptions(stored.metadata, stored.target.kind);
    if (problem !== null) log.warn({ attachmentId: stored.id, problem }, "stored attach options are not valid any more; the closed defaults apply");
    const ifindex = stored.target.kind === "interface" ? (interfaceIndex(stored.target.name) ?? 0) : 0;
    const draft = toRecord(stored, { id: stored.id, slot: stored.slot, kind: stored.target.kind, method: stored.method, ifindex, mode: "block-all", audit: false, attached: false }, opts.dnsAddress(stored.dnsPort), options, ifindex);
    try {
      const r = await opts.recreate(stored, options, draft.state.compile(opts.nowMs));
      result.records.push({ ...draft, method: r.method, ifindex: r.ifindex || ifindex });
      result.recreated.push(stored.id);
      slots.add(stored.slot);
      ports.add(stored.dnsPort);
      keys.add(key);
      log.warn({ attachmentId: stored.id, target: stored.targetText, method: r.method }, "pins were gone (reboot?) and the target is back: attachment re-created from the state store");
    } catch (err) {
      log.error({ attachmentId: stored.id, err, target: stored.targetText }, "stored attachment could not be re-created; kept for the next start");
      result.unadopted.push(stored);
    }
  }
}

/** The target exists now: the interface by name (maybe re-created: another ifindex), or the cgroup directory. */
function targetPresent(t: TargetSpec): boolean {
  return t.kind === "interface" ? interfaceIndex(t.name) !== null : isCgroupDir(t.path);
}

function toRecord(stored: StoredAttachment, adopted: AdoptedAttachment, dnsAddress: string, options: AttachOptions, ifindex: number): AttachmentRecord {
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
    ifindex: ifindex || stored.ifindex,
    state: new PolicyState(loadPolicy(stored.policy), learned, RuleOrigins.fromStored(stored.origins)),
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
