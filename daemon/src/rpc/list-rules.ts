import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { BlockedByOwnerSchema, ListRulesResponseSchema, RuleInfoSchema, type ListRulesRequest, type ListRulesResponse } from "@netfence/proto/daemon";
import { invalidArgument, NetfenceError } from "@netfence/proto/errors";
import { policyModeToWire } from "@netfence/proto/modes";
import type { RulesView } from "../attachments/rules-view.js";

/**
 * Blocked attempts of one owner of an attachment (issue 15): structurally the `OwnerCount` of lane
 * S's attachments/blocked-owners.ts (BlockedOwners.forAttachment), which app.ts hands in.
 */
export interface OwnerCountView {
  readonly uid: number | null;
  readonly kind: "uid" | "unknown" | "other";
  readonly user: string | null;
  readonly blocked: number;
  readonly audited: number;
  readonly lastMs: number;
}

/** DaemonService.ListRules (issue 14): validation, then the manager's kernel read-back, to the wire;
 * with `ownersOf` (issue 15) also the attachment's blocked attempts by socket owner. */
export async function listRules(
  req: ListRulesRequest, rulesOf: ((id: string) => Promise<RulesView>) | undefined, ownersOf?: (id: string) => readonly OwnerCountView[],
): Promise<ListRulesResponse> {
  const id = req.id.trim();
  if (id === "") throw invalidArgument("rules needs an attachment id");
  if (id.length > 128) throw invalidArgument("attachment id is too long");
  if (rulesOf === undefined) throw new NetfenceError("FAILED_PRECONDITION", "this daemon cannot list rules");
  const v = await rulesOf(id);
  return create(ListRulesResponseSchema, {
    id: v.id,
    mode: policyModeToWire(v.mode),
    audit: v.audit,
    capacity: v.capacity,
    overflowedRules: v.overflowedRules,
    rules: v.rules.map((r) =>
      create(RuleInfoSchema, {
        ruleId: r.ruleId,
        rule: r.rule,
        kind: r.kind,
        action: r.action,
        kernelEntries: r.kernelEntries,
        prefixes: [...r.prefixes],
        packets: r.packets,
        ...(r.lastHitMs > 0 ? { lastHit: timestampFromMs(r.lastHitMs) } : {}),
        ...(r.expiresAtMs !== null ? { expiresAt: timestampFromMs(r.expiresAtMs) } : {}),
        inDaemon: r.inDaemon,
        scope: r.scope,
      }),
    ),
    blockedByOwner: (ownersOf?.(v.id) ?? []).map((o) =>
      create(BlockedByOwnerSchema, {
        kind: o.kind, uid: o.uid ?? 0, user: o.user ?? "", blocked: BigInt(o.blocked), audited: BigInt(o.audited),
        ...(o.lastMs > 0 ? { last: timestampFromMs(o.lastMs) } : {}),
      }),
    ),
  });
}
