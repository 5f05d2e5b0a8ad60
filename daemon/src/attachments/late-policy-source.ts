import { NetfenceError } from "@netfence/proto/errors";
import type { AttachmentView } from "./attachment-view.js";
import type { PolicySource } from "./policy-source.js";
import type { AttachmentPolicy } from "../policy/policy.js";

/**
 * A PolicySource whose target is set after construction: the control-plane client needs the
 * daemon id and the manager (its ControlPlaneHost), which exist only once the manager started.
 * Before the target is set nothing can attach (the RPC server is not up yet), and an
 * Unsubscribed is dropped — the SyncRequest sent on connect is authoritative.
 */
export class LatePolicySource implements PolicySource {
  private target: PolicySource | null = null;

  set(target: PolicySource): void {
    this.target = target;
  }

  subscribe(attachment: AttachmentView): Promise<AttachmentPolicy> {
    if (this.target === null) return Promise.reject(new NetfenceError("UNAVAILABLE", "the daemon is still starting"));
    return this.target.subscribe(attachment);
  }

  unsubscribed(id: string, reason: "removed" | "detached" | "error", error?: string): void {
    this.target?.unsubscribed(id, reason, error);
  }

  adopted(attachment: AttachmentView): void {
    this.target?.adopted?.(attachment);
  }
}
