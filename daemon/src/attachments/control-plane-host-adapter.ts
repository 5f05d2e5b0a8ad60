import type { ControlPlaneHost } from "../control-plane/control-plane-host.js";
import type { AttachmentRegistry } from "./registry.js";
import type { CommandApplier } from "./command-applier.js";
import type { AttachmentStats } from "./attachment-stats.js";
import type { HitsTracker } from "./hits-tracker.js";
import type { PolicyHistory } from "../history/policy-history.js";

/**
 * The adapter between the control-plane connection and the attachments: the connection sees
 * only ControlPlaneHost (its own interface), the attachments implement no control-plane interface.
 */
export function controlPlaneHost(registry: AttachmentRegistry, commands: CommandApplier, stats: AttachmentStats, history: PolicyHistory, hits?: HitsTracker): ControlPlaneHost {
  return {
    attachments: () => registry.list(),
    // The CommandResult goes out once the kernel holds the command; the state write follows.
    applyCommand: (attachmentId, command, origin) => commands.applyToKernel(attachmentId, command, origin),
    recordHistory: (record) => history.record(record),
    stats: () => stats.all(),
    ...(hits === undefined ? {} : { ruleHits: () => hits.collect() }),
  };
}
