import { NetfenceError } from "@netfence/proto/errors";
import type { AttachmentRecord } from "./attachment-record.js";
import { DIRECTION_KEY, parseAttachOptions } from "./attach-options.js";
import { PolicyState } from "../policy/policy-state.js";
import { adoptedPolicy, type OrphanInfo } from "./orphan.js";
import { targetKey } from "./target.js";

/**
 * The live record of an adopted orphan: same id, slot, pins and DNS port as its pins say; the
 * policy its maps enforce; no metadata (the store that knew it is gone), so the closed default
 * attach options. Throws FAILED_PRECONDITION when the pins or the target cannot be identified.
 */
export function orphanRecord(
  o: OrphanInfo,
  ctx: { readonly now: number; readonly dnsAddress: (port: number) => string; readonly portMin: number; readonly portMax: number },
): AttachmentRecord {
  if (o.pinned === null) {
    throw new NetfenceError("FAILED_PRECONDITION", `the pins of orphan ${o.id} cannot be read (${o.problem ?? "unknown"}); remove it with \`netfenced detach --orphan ${o.id}\``, { details: { id: o.id } });
  }
  if (o.target === null) {
    throw new NetfenceError("FAILED_PRECONDITION", `the target of orphan ${o.id} (${o.targetText}) is not found on this host; remove it with \`netfenced detach --orphan ${o.id}\``, { details: { id: o.id } });
  }
  if (o.dnsPort === 0) {
    throw new NetfenceError("FAILED_PRECONDITION", `orphan ${o.id} has no DNS port in its pins; remove it with \`netfenced detach --orphan ${o.id}\``, { details: { id: o.id } });
  }
  const p = o.pinned;
  const target = o.target;
  // The direction is the one attach option the pins tell; metadata carries it so a restart re-reads it.
  const metadata: Record<string, string> = target.kind === "interface" && target.direction === "egress" ? { [DIRECTION_KEY]: "egress" } : {};
  return {
    id: o.id,
    slot: p.slot,
    target,
    key: targetKey(target),
    targetText: target.kind === "interface" ? target.name : target.path,
    dnsPort: o.dnsPort,
    dnsAddress: ctx.dnsAddress(o.dnsPort),
    metadata,
    options: parseAttachOptions(metadata, target.kind),
    attachedAtMs: ctx.now,
    method: p.method,
    ifindex: target.kind === "interface" ? p.ifindex : 0,
    state: new PolicyState(adoptedPolicy(o.id, p)),
    dns: null,
    stored: null,
  };
}
