import type { AttachmentView } from "./attachment-view.js";
import type { AttachmentPolicy } from "../policy/policy.js";

/**
 * Where an attachment's initial policy comes from, and who hears that it went away.
 * Implemented by the control-plane client (Subscribed → SubscribedAck) and, without a control
 * plane, by LocalPolicySource (the default policy from config). The manager depends only on this.
 */
export interface PolicySource {
  /** Resolves with the initial policy; rejects (DEADLINE_EXCEEDED / UNAVAILABLE) → the attach is rolled back. */
  subscribe(attachment: AttachmentView): Promise<AttachmentPolicy>;
  /** Where the initial policy comes from, for explain (absent: a control plane). */
  readonly origin?: "default-policy" | "control-plane";
  unsubscribed(id: string, reason: "removed" | "detached" | "error", error?: string): void;
  /**
   * An attachment re-registered from its pins (`netfenced adopt`) is live with the policy its maps
   * enforce; a control plane hears Subscribed and may answer with a SubscribedAck at any time.
   */
  adopted?(attachment: AttachmentView): void;
  /** Who an attachment's initial policy is recorded as coming from in the audit trail (default "default-policy"). */
  readonly historySource?: "control-plane" | "default-policy";
}
