import type { HistoryRecord } from "../history/history-entry.js";
import type { AttachmentPolicy } from "../policy/policy.js";
import { policySummary } from "../history/change-summary.js";

/**
 * The audit-trail entries the control-plane connection records itself (the command applier
 * records every command that reaches it): commands rejected when parsed, and SubscribedAcks
 * accepted as an attachment's initial policy.
 */
export function rejectedCommand(controlPlane: string, attachmentId: string, action: string, commandId: string | null, error: string): HistoryRecord {
  return { attachmentId, source: "control-plane", action, commandId: commandId ?? "", controlPlane, summary: "invalid command", result: "rejected", error };
}

export function acceptedAck(controlPlane: string, attachmentId: string, commandId: string | null, policy: AttachmentPolicy, skipped: readonly string[]): HistoryRecord {
  return {
    attachmentId, source: "control-plane", action: "subscribed-ack", commandId: commandId ?? "", controlPlane,
    summary: `initial policy: ${policySummary(policy)}`, result: "applied", skipped,
  };
}
