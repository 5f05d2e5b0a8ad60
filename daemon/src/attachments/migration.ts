import type { Logger } from "pino";
import type { AttachResult, Filter, FilterPolicy } from "../datapath/filter.js";
import type { StoredAttachment } from "../store/snapshot.js";
import type { AttachOptions } from "./attach-options.js";
import { LAYOUT_VERSION } from "../datapath/wire-format.js";

/**
 * Migration of a stored attachment whose pins were written with another layout (an upgrade that
 * changed NF_LAYOUT_VERSION: the loader's ADOPT refuses them, PINNED_LAYOUT). Without it the
 * attachment would stay unadopted: the old program keeps enforcing, but nothing manages it and its
 * DNS server does not run, so the workload loses DNS. Steps, with no moment unfiltered:
 *   1. the old pin directory is moved aside (<pin_root>/_migrating-<id>): the old program stays
 *      attached and enforcing;
 *   2. the attachment is re-created from the state store exactly as after a reboot (same id, slot,
 *      DNS address and port, policy, deadlines, learned addresses): the new program is attached
 *      BESIDE the old one — TCX and cgroup links run both (a packet must pass both: the
 *      intersection, fail closed), a new clsact filter gets its own priority in front of the old;
 *   3. the old program is detached and its pins removed.
 * A failure in 2 or 3 rolls back: the new attachment is detached, the old pins renamed back (still
 * enforcing, left unadopted with a warning): nothing changed.
 */
export interface MigrationDeps {
  readonly filter: Filter;
  readonly logger: Logger;
  /** Attaches afresh (the manager's attach spec), as the reboot path does. */
  readonly recreate: (stored: StoredAttachment, options: AttachOptions, policy: FilterPolicy) => Promise<AttachResult>;
}

export interface MigrationOutcome {
  readonly result: AttachResult;
  /** The operator-facing line for DaemonStatus warnings. */
  readonly warning: string;
}

/** Migrates one stored attachment to `policy` (its stored policy, compiled as the reboot path does). */
export async function migrateStored(
  deps: MigrationDeps, stored: StoredAttachment, options: AttachOptions, policy: FilterPolicy,
): Promise<MigrationOutcome> {
  const { filter } = deps;
  const log = deps.logger.child({ attachmentId: stored.id });
  const old = await filter.beginMigration(stored.id);
  log.info({ oldLayout: old.layout, oldMagic: old.magic, oldProgId: old.progId, oldMethod: old.method, layout: LAYOUT_VERSION }, "pins of another layout moved aside; re-creating the attachment beside them");
  let result: AttachResult;
  try {
    result = await deps.recreate(stored, options, policy);
  } catch (err) {
    await rollBack(filter, log, stored.id, false);
    throw err;
  }
  try {
    const done = await filter.finishMigration(stored.id);
    log.info({ method: result.method, oldDetached: done.detached, oldLayout: old.layout, layout: LAYOUT_VERSION }, "attachment migrated: new program attached, old program detached and its pins removed");
  } catch (err) {
    await rollBack(filter, log, stored.id, true);
    throw err;
  }
  const warning = `attachment ${stored.id} (${stored.targetText}): pins of layout ${old.layout} (magic 0x${old.magic.toString(16)}) migrated to layout ${LAYOUT_VERSION}`;
  return { result, warning };
}

/** Detaches the new attachment (when it was made) and renames the old pins back. */
async function rollBack(filter: Filter, log: Logger, id: string, detachNew: boolean): Promise<void> {
  if (detachNew) {
    await filter.detach(id).catch((err: unknown) => log.error({ err }, "migration rollback: detaching the new attachment failed"));
  }
  await filter.abortMigration(id).then(
    () => log.warn("migration rolled back: the old pins are back in place, still enforcing"),
    (err: unknown) => log.error({ err }, "migration rollback: the old pins could not be renamed back (they stay set aside, still attached)"),
  );
}

/**
 * Start-up recovery of a migration a crash interrupted: old pins set aside while <id> has no pins
 * (crashed before the new attach) are renamed back, so the migration runs again. Returns the ids
 * whose new attachment is pinned too (crashed before the old was detached): finish them once adopted.
 */
export async function recoverMigrations(filter: Filter, log: Logger, pinned: ReadonlySet<string>): Promise<string[]> {
  const pending: string[] = [];
  for (const id of await filter.listMigrating()) {
    if (pinned.has(id)) {
      pending.push(id);
      continue;
    }
    await filter.abortMigration(id).then(
      () => log.warn({ attachmentId: id }, "an interrupted migration's old pins were renamed back; migrating again"),
      (err: unknown) => log.error({ attachmentId: id, err }, "an interrupted migration's old pins could not be renamed back"),
    );
  }
  return pending;
}
