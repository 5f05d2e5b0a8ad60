import type { ControlPlaneHost } from "../control-plane/control-plane-host.js";
import type { AttachmentRegistry } from "./registry.js";
import type { CommandApplier } from "./command-applier.js";
import type { AttachmentStats } from "./attachment-stats.js";
import type { HitsTracker } from "./hits-tracker.js";

/**
 * The adapter between the control-plane connection and the attachments: the connection sees
 * only ControlPlaneHost (its own interface), the attachments implement no control-plane interface.
 */
export function controlPlaneHost(registry: AttachmentRegistry, commands: CommandApplier, stats: AttachmentStats, hits?: HitsTracker): ControlPlaneHost {
  return {
    attachments: () => registry.list(),
    // The CommandResult goes out once the kernel holds the command; the state write follows.
    applyCommand: (attachmentId, command, commandId, what) => commands.applyToKernel(attachmentId, command, { source: "control-plane", commandId: commandId ?? "", what }),
    stats: () => stats.all(),
    ...(hits === undefined ? {} : { ruleHits: () => hits.collect() }),
  };
}
