import type { Cidr } from "@netfence/proto/parse";
import type { FilterEntry, FilterPolicy } from "./filter.js";
import type { ContentShadows } from "./content-shadow.js";
import type { ScopeRegistry } from "./scope-registry.js";
import { encodeScopeWire } from "./scope-wire.js";
import { encodeEntries, encodePolicy, Op, type WireEntry } from "./wire-format.js";

/**
 * The policy writes of the kernel driver (kernel-filter.ts) with the scope table of issue 15: the
 * scope compiler's registry (scope-registry.ts) turns FilterEntry.scoped into scope ids and
 * scope-table entries; the frames carry both (scope entries first); the content shadow follows every
 * frame as it is sent, and so does the registry for a REPLACE (the loader answers in order: an UPSERT
 * sent after it lands in that generation); a REPLACE the loader refuses leaves the registry unknown.
 */
export interface KnownAttachment {
  readonly slot: number;
  /** NF_SETTING_KEEP as last sent (SET_MODE sends it again: the loader stores the flags whole). */
  keep: boolean;
  /** The scope sets of its generations (issue 15). */
  readonly scopes: ScopeRegistry;
}

/** What the writes need of the driver: its ordered frame writer and its content shadows. */
export interface FrameWriter {
  write(id: string, op: number, payload: Buffer, sent: () => void): Promise<void>;
  readonly shadows: ContentShadows;
}

/** A REPLACE of already compiled entries and scope-table entries (40-byte wire records). */
export async function replaceCompiled(
  w: FrameWriter, k: KnownAttachment, id: string, policy: FilterPolicy, entries: readonly WireEntry[], scopeWire: Uint8Array, sent?: () => void,
): Promise<void> {
  const keep = policy.keepEstablished === true;
  await w.write(id, Op.REPLACE, encodePolicy(id, policy.mode, policy.audit, entries, keep, scopeWire), () => {
    k.keep = keep;
    w.shadows.replaced(id, { ...policy, entries }, Date.now(), scopeWire);
    sent?.();
  });
}

/** UPSERT into the active generation with scope-table entries (learned addresses of scoped domain rules). */
export async function upsertCompiled(w: FrameWriter, id: string, entries: readonly WireEntry[], scopeWire: Uint8Array): Promise<void> {
  if (!entries.length && !scopeWire.length) return;
  await w.write(id, Op.UPSERT, encodeEntries(id, entries, scopeWire), () => w.shadows.upserted(id, entries, Date.now(), scopeWire));
}

/** DELETE of address entries and scope-table entries (values ignored; the loader deletes the scope table last). */
export async function deleteCompiled(w: FrameWriter, id: string, cidrs: readonly Cidr[], scopeWire: Uint8Array): Promise<void> {
  const entries = cidrs.map((cidr) => ({ cidr, allow: false, deny: false, expiresAtMs: null }));
  if (!entries.length && !scopeWire.length) return;
  await w.write(id, Op.DELETE, encodeEntries(id, entries, scopeWire), () => {
    w.shadows.deleted(id, cidrs);
    w.shadows.scopesDeleted(id, scopeWire);
  });
}

/**
 * The registry takes the new generation when the REPLACE is sent (UPSERTs written after it are
 * compiled against it). If the loader then refuses the REPLACE, the kernel still runs the old
 * generation, whose ids the registry no longer holds: it is marked unknown, so scoped UPSERTs are
 * refused (learned scoped addresses are not added: closed) until the next REPLACE succeeds.
 */
export async function replacePolicy(w: FrameWriter, k: KnownAttachment, id: string, policy: FilterPolicy): Promise<void> {
  const plan = k.scopes.replace(policy.entries, Date.now());
  let sent = false;
  try {
    await replaceCompiled(w, k, id, policy, plan.entries, encodeScopeWire(plan.scopeWire), () => {
      plan.commit();
      sent = true;
    });
  } catch (err) {
    if (sent) k.scopes.markUnknown();
    throw err;
  }
}

/** Into the active generation; scoped entries reuse or add scope sets, sets no prefix uses any more are deleted after. */
export async function upsertEntries(w: FrameWriter, k: KnownAttachment, id: string, entries: readonly FilterEntry[]): Promise<void> {
  if (!entries.length) return;
  const plan = k.scopes.upsert(entries, Date.now());
  await upsertCompiled(w, id, plan.entries, encodeScopeWire(plan.scopeWire));
  plan.commit();
  if (plan.scopeRemove.length) await deleteCompiled(w, id, [], encodeScopeWire(plan.scopeRemove));
  plan.released();
}

export async function deleteEntries(w: FrameWriter, k: KnownAttachment, id: string, cidrs: readonly Cidr[]): Promise<void> {
  if (!cidrs.length) return;
  const plan = k.scopes.delete(cidrs);
  await deleteCompiled(w, id, cidrs, encodeScopeWire(plan.scopeRemove)); // one frame
  plan.commit();
  plan.released();
}
