import type { PolicyCommand } from "../policy/policy.js";
import { planCommand, type KernelOp } from "../plan/command-plan.js";
import type { AttachmentCore } from "./attachment-core.js";
import { hostText } from "../policy/learned-addresses.js";
import type { RuleOrigin } from "../policy/rule-origins.js";

/** Who sent a command (explain's provenance; `what` defaults to the command's kind); absent: the local API. */
export type CommandOrigin = Omit<RuleOrigin, "atMs" | "what"> & { readonly what?: string };

/**
 * Command application: one validated PolicyCommand (parse-command.ts, or the local API) → one
 * plan (plan/command-plan.ts: the single kernel operation that expresses it) → that operation on
 * the filter → the plan committed to the attachment's policy state. In the queue; a command for
 * an attachment still being attached waits for the attach to settle.
 */
export class CommandApplier {
  constructor(private readonly core: AttachmentCore) {}

  /** Applies `command` and resolves once the change is also durable in the state store (the local API). */
  async apply(attachmentId: string, command: PolicyCommand, origin?: CommandOrigin): Promise<void> {
    await this.applyToKernel(attachmentId, command, origin);
    await this.core.persistence.persistOrLog();
  }

  /**
   * Applies `command` and resolves as soon as the kernel holds it (and memory: a later command
   * plans against it). The state write is started, not awaited: the control plane's CommandResult
   * is about the kernel, and the write (group-committed with its neighbours) must not sit on that
   * path. A crash in between loses only the durable copy of this one change: the pins keep
   * enforcing it, and the control plane's SubscribedAck after the reconnect restates the policy.
   */
  async applyToKernel(attachmentId: string, command: PolicyCommand, origin: CommandOrigin = { source: "local-api", commandId: "" }): Promise<void> {
    const { registry, queue, learned, log } = this.core;
    const pending = registry.reservations.get(attachmentId);
    if (pending !== undefined) await pending.settled;
    await queue.run("command", async () => {
      const rec = registry.require(attachmentId);
      const t0 = performance.now();
      const plan = planCommand(rec.state, command, this.core.now(), learned.guard);
      const t1 = performance.now();
      await this.runOp(rec.id, plan.op);
      const kernelMs = performance.now() - t1;
      plan.commit();
      if (plan.unchanged === true) return;
      // Only a change is recorded (and persisted with it): a restated rule keeps its first origin.
      rec.state.origins.noteCommand(command, { source: origin.source, commandId: origin.commandId, what: origin.what ?? command.kind, atMs: this.core.now() });
      rec.stored = null;
      for (const r of plan.refused ?? []) {
        learned.report({ attachmentId: rec.id, name: r.name, address: hostText(r.key), reason: r.reason, when: "recheck" });
      }
      log.debug({ attachmentId, command: command.kind, op: plan.op.kind, planMs: round2(t1 - t0), kernelMs: round2(kernelMs) }, "command applied");
    });
    void this.core.persistence.persistOrLog();
  }

  private async runOp(id: string, op: KernelOp): Promise<void> {
    const f = this.core.filter;
    switch (op.kind) {
      case "none":
        return;
      case "mode":
        return f.setMode(id, op.mode, op.audit);
      case "upsert":
        return f.upsertEntries(id, op.entries);
      case "delete":
        return f.deleteEntries(id, op.cidrs);
      case "replace": {
        // Rule ids a replace before this one retired: zeroed before the new rules may take them.
        const recycled = this.core.registry.require(id).state.ruleIds.takeDirty();
        if (recycled.length > 0) await f.clearRuleHits(id, recycled);
        return f.replacePolicy(id, op.policy);
      }
    }
  }
}

const round2 = (ms: number): number => Math.round(ms * 100) / 100;
