import type { AttachmentStatsView, AttachmentView } from "../attachments/attachment-view.js";
import type { PolicyCommand } from "../policy/policy.js";
import type { HitsDelta } from "../attachments/hits-tracker.js";
import type { CommandOrigin, HistoryRecord } from "../history/history-entry.js";

/**
 * What the control-plane connection needs from the daemon (an adapter over the attachment
 * registry, command applier and stats: attachments/control-plane-host-adapter.ts). The
 * connection never holds the manager itself, only this narrow seam.
 */
export interface ControlPlaneHost {
  /** All current attachments, for SyncRequest. */
  attachments(): readonly AttachmentView[];
  /**
   * Applies one validated command atomically; resolves once the kernel holds it (the state store
   * write follows). Throws NetfenceError (NOT_FOUND, INVALID_ARGUMENT, …) and changes nothing on failure.
   */
  applyCommand(attachmentId: string, command: PolicyCommand, origin: CommandOrigin): Promise<void>;
  /**
   * The audit trail, for what never reaches applyCommand: commands rejected when parsed, and
   * SubscribedAcks accepted as an attachment's initial policy (the attach records the rest).
   */
  recordHistory?(record: HistoryRecord): void;
  /** Per-attachment counters, for Heartbeat. */
  stats(): Promise<readonly AttachmentStatsView[]>;
  /** Per attachment, the rules whose kernel hit count moved since the last call (Heartbeat; optional). */
  ruleHits?(): Promise<ReadonlyMap<string, HitsDelta>>;
}
