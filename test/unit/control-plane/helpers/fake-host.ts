import type { AttachmentStatsView, AttachmentView } from "../../../../daemon/src/attachments/attachment-view.js";
import type { ControlPlaneHost } from "../../../../daemon/src/control-plane/control-plane-host.js";
import type { PolicyCommand } from "../../../../daemon/src/policy/policy.js";
import { NetfenceError } from "@netfence/proto/errors";

/** An in-memory ControlPlaneHost: records applied commands; unknown attachment ids → NOT_FOUND. */
export class FakeHost implements ControlPlaneHost {
  readonly views = new Map<string, AttachmentView>();
  readonly applied: Array<{ id: string; command: PolicyCommand }> = [];
  applyDelayMs = 0;
  statsCalls = 0;

  add(id: string, metadata: Record<string, string> = {}): AttachmentView {
    const view: AttachmentView = {
      id,
      target: `veth-${id}`,
      type: "interface",
      mode: "allowlist",
      dnsMode: "allowlist",
      dnsAddress: "127.0.0.1:11000",
      metadata,
      attachedAtMs: 0,
      method: "tcx",
    };
    this.views.set(id, view);
    return view;
  }

  attachments(): readonly AttachmentView[] {
    return [...this.views.values()];
  }

  async applyCommand(attachmentId: string, command: PolicyCommand): Promise<void> {
    if (this.applyDelayMs > 0) await new Promise((r) => setTimeout(r, this.applyDelayMs));
    if (!this.views.has(attachmentId)) throw new NetfenceError("NOT_FOUND", `attachment ${attachmentId} not found`);
    this.applied.push({ id: attachmentId, command });
  }

  async stats(): Promise<readonly AttachmentStatsView[]> {
    this.statsCalls++;
    return [...this.views.keys()].map((id, i) => ({
      id,
      packetsAllowed: BigInt(100 + i),
      packetsBlocked: 7n,
      packetsAudited: 0n,
      dnsQueriesAllowed: 3n,
      dnsQueriesBlocked: 1n,
    }));
  }
}
