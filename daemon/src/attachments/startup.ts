import type { PolicySource } from "./policy-source.js";
import { reconcile } from "./reconcile.js";
import type { AttachmentCore } from "./attachment-core.js";
import type { AttachmentResources } from "./attachment-resources.js";
import type { TamperWatch } from "./tamper-watch.js";

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
  /** Stored attachments whose pins were of another layout, re-created in this one (migration.ts). */
  readonly migrated: string[];
}

export interface StartupOptions {
  readonly cgroupRoot: string | null;
  /** Used when the store has no daemon id yet (memory store: derived from the machine). */
  readonly fallbackDaemonId?: string;
  /** Re-create stored attachments whose pins are gone but whose target is there (a reboot). Default true. */
  readonly restore?: boolean;
}

/**
 * The start-up restore, one queued operation: loads the store, reconciles it with the pins
 * (reconcile.ts: adopt, re-create after a reboot, relink, clean, report orphans and unadoptable
 * ones), restarts the DNS servers, re-checks learned addresses against today's guard, persists.
 * Returns the report and the warnings the operator should see.
 */
export async function restoreAttachments(
  core: AttachmentCore, resources: AttachmentResources, policySource: PolicySource, opts: StartupOptions, tamper: TamperWatch,
): Promise<{ report: StartReport; warnings: string[] }> {
  const { registry, persistence, filter, log } = core;
  const store = persistence.store;
  const snapshot = await persistence.load(opts.fallbackDaemonId);
  const result = await reconcile({
    filter,
    logger: log,
    stored: snapshot?.attachments ?? [],
    dnsAddress: (port) => resources.dnsAddress(port),
    nowMs: core.now(),
    restore: opts.restore,
    cgroupRoot: opts.cgroupRoot,
    recreate: (s, options, policy) => filter.attach(resources.attachSpec(s.id, s.slot, s.target, s.dnsPort, options), policy),
    relink: (s) => filter.relink(s.id, s.target, resources.method),
  });
  for (const s of result.unadopted) registry.unadopted.set(s.id, s);
  for (const o of result.orphans) registry.orphans.set(o.id, o);
  const warnings = [...(store.warnings ?? []), ...result.warnings];
  if (result.unadopted.length > 0) {
    warnings.push(`${result.unadopted.length} stored attachment(s) could not be adopted or re-created and are kept for the next start: ${result.unadopted.map((s) => s.id).join(", ")}`);
  }
  for (const rec of result.records) registry.records.set(rec.id, rec);
  // What the kernel should hold for the adopted ones, for the content check below (the re-created
  // and migrated ones were just written). compile(0): expired entries too, as the kernel keeps them
  // until the garbage collection deletes them.
  const written = new Set([...result.recreated, ...result.migrated]);
  for (const rec of result.records) if (!written.has(rec.id)) filter.expectPolicy(rec.id, rec.state.compile(0));
  // An adopted filter found detached is never taken as enforcing: re-attached by reconcile, reported here.
  for (const id of result.relinked) tamper.report(id, "filter-detached", "found at start: the pinned filter was not attached any more (clsact filter deleted, link detached); attached again", true);
  // DNS servers come back on their ports; binding is cheap, so all at once.
  await Promise.all(
    result.records.map(async (rec) => {
      rec.dns = await resources.startDns(rec).catch((err: unknown) => {
        log.error({ attachmentId: rec.id, err }, "DNS server could not be restarted; the filter keeps enforcing");
        return null;
      });
      log.info({ attachmentId: rec.id, target: rec.targetText, slot: rec.slot, dnsAddress: rec.dnsAddress }, "re-adopted pinned attachment");
    }),
  );
  for (const id of result.removed) policySource.unsubscribed(id, "removed");
  // The audit trail: what the start changed (a plain re-adoption changes nothing and is not recorded).
  const lifecycle = (ids: readonly string[], action: string, summary: string): void => {
    for (const attachmentId of ids) core.history.record({ attachmentId, source: "daemon", action, summary, result: "applied" });
  };
  lifecycle(result.recreated, "restore", "re-created from the state store (its pins were gone: a reboot)");
  lifecycle(result.migrated, "migrate", "pins of another kernel layout re-created in this one beside the old program, then the old one removed");
  lifecycle(result.relinked, "relink", "pinned filter was not attached any more; attached again");
  lifecycle(result.removed, "removed", "target gone while the daemon was down (or could not be re-created)");
  lifecycle(result.cleaned, "cleaned", "pins of an attach that never linked removed");
  lifecycle(result.orphans.map((o) => o.id), "orphan-found", "pinned filter the state store does not account for; kept enforcing");
  // Learned addresses kept from before the restart meet today's guard (protected_deny may have changed).
  for (const rec of result.records) {
    await core.learned.recheck(rec).catch((err: unknown) => log.warn({ attachmentId: rec.id, err }, "re-checking learned addresses failed"));
  }
  // Verified, not taken on the loader's word: attach point, pins and the policy in the maps.
  await tamper.checkNow(new Map(result.records.map((r) => [r.id, { pins: true, content: true }])), "found at start: ")
    .catch((err: unknown) => log.error({ err }, "the start-up tamper check failed"));
  await persistence.persist();
  return {
    report: {
      adopted: result.records.map((r) => r.id),
      removed: result.removed,
      orphans: result.orphans.map((o) => o.id),
      unadopted: result.unadopted.map((s) => s.id),
      relinked: result.relinked,
      recreated: result.recreated,
      cleaned: result.cleaned,
      migrated: result.migrated,
    },
    warnings,
  };
}
