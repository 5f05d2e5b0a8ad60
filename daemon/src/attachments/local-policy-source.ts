import type { Logger } from "pino";
import type { AttachmentView } from "./attachment-view.js";
import type { PolicySource } from "./policy-source.js";
import type { AttachmentPolicy } from "../policy/policy.js";

/**
 * PolicySource without a control plane: every attachment starts on the `default_policy` of the
 * config (SPEC §4/§6), so a standalone daemon is useful. TTL-less by construction.
 */
export class LocalPolicySource implements PolicySource {
  readonly origin = "default-policy" as const;

  readonly historySource = "default-policy";
  constructor(
    private readonly policy: AttachmentPolicy,
    private readonly logger?: Logger,
  ) {}

  async subscribe(attachment: AttachmentView): Promise<AttachmentPolicy> {
    this.logger?.debug({ attachmentId: attachment.id, mode: this.policy.mode }, "local default policy");
    return this.policy;
  }

  unsubscribed(id: string, reason: "removed" | "detached" | "error", error?: string): void {
    this.logger?.debug({ attachmentId: id, reason, error }, "unsubscribed");
  }
}
