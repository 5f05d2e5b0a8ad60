import type { PolicyCommand } from "../policy/policy.js";
import { planCommand, type KernelOp } from "../plan/command-plan.js";
import type { AttachmentCore } from "./attachment-core.js";
import { hostText } from "../policy/learned-addresses.js";
import type { RuleOrigin } from "../policy/rule-origins.js";

/** Who sent a command (explain's provenance; `what` defaults to the command's kind); absent: the local API. */
import type { CommandOrigin } from "../history/history-entry.js";
import { commandSummary, type PolicyBefore } from "../history/change-summary.js";
import type { RuleIndex } from "../policy/rule-index.js";
import { checkCommandOwnerScopes } from "../policy/owner-scope-check.js";

/** The local API (DaemonService, i.e. the CLI) when the caller says nothing else. */
const LOCAL: CommandOrigin = { source: "cli" };

/**
 * Command application: one validated PolicyCommand (parse-command.ts, or the local API) → one
 * plan (plan/command-plan.ts: the single kernel operation that expresses it) → that operation on
 * the filter → the plan committed to the attachment's policy state. In the queue; a command for
 * an attachment still being attached waits for the attach to settle.
 */
export class CommandApplier {
  constructor(private readonly core: AttachmentCore) {}

  /** Applies `command` and resolves once the change is also durable in the state store (the local API). */
  async apply(attachmentId: string, command: PolicyCommand, origin: CommandOrigin = LOCAL): Promise<void> {
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
  async applyToKernel(attachmentId: string, command: PolicyCommand, origin: CommandOrigin = LOCAL): Promise<void> {
    const { registry, queue, learned, log } = this.core;
    const pending = registry.reservations.get(attachmentId);
    if (pending !== undefined) await pending.settled;
    const timeMs = this.core.now();
    let before: PolicyBefore | null = null;
    let after: RuleIndex | undefined;
    let unchanged = false;
    try {
      await queue.run("command", async () => {
        const rec = registry.require(attachmentId);
        checkCommandOwnerScopes(command, rec.target.kind);
        const s = rec.state;
        before = { mode: s.mode, audit: s.audit, rules: s.rules, dns: s.dns };
        const t0 = performance.now();
        const plan = planCommand(rec.state, command, this.core.now(), learned.guard);
        const t1 = performance.now();
        await this.runOp(rec.id, plan.op);
        const kernelMs = performance.now() - t1;
        plan.commit();
        after = rec.state.rules;
        this.core.onCommandTimings?.(t1 - t0, kernelMs);
        if (plan.unchanged === true) {
          unchanged = true;
          return;
        }
        // Only a change is recorded (and persisted with it): a restated rule keeps its first origin.
        rec.state.origins.noteCommand(command, ruleOrigin(command, origin, this.core.now()));
        rec.stored = null;
        for (const r of plan.refused ?? []) {
          learned.report({ attachmentId: rec.id, name: r.name, address: hostText(r.key), reason: r.reason, when: "recheck" });
        }
        log.debug({ attachmentId, command: command.kind, op: plan.op.kind, planMs: round2(t1 - t0), kernelMs: round2(kernelMs) }, "command applied");
      });
    } catch (err) {
      this.recordLater(attachmentId, command, origin, timeMs, before, undefined, "rejected", errorMessage(err));
      throw err;
    }
    this.recordLater(attachmentId, command, origin, timeMs, before, after, unchanged ? "unchanged" : "applied", "");
    void this.core.persistence.persistOrLog();
  }

  /** The audit-trail entry, in a later turn (the summary may diff thousands of CIDRs). */
  private recordLater(
    attachmentId: string,
    command: PolicyCommand,
    origin: CommandOrigin,
    timeMs: number,
    before: PolicyBefore | null,
    after: RuleIndex | undefined,
    result: "applied" | "rejected" | "unchanged",
    error: string,
  ): void {
    setImmediate(() => {
      this.core.history.record({
        timeMs,
        attachmentId,
        source: origin.source,
        action: origin.action ?? command.kind,
        commandId: origin.commandId ?? "",
        controlPlane: origin.controlPlane ?? "",
        summary: result === "unchanged" ? "no change: the policy already was this" : before === null ? command.kind : commandSummary(command, before, after),
        result,
        error,
        skipped: origin.skipped ?? [],
      });
    });
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

const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const round2 = (ms: number): number => Math.round(ms * 100) / 100;

/** The explain origin (policy/rule-origins.ts) of a change recorded under the audit trail's origin. */
function ruleOrigin(command: PolicyCommand, origin: CommandOrigin, atMs: number): RuleOrigin {
  const source = origin.source === "control-plane" || origin.source === "default-policy" ? origin.source : "local-api";
  return { source, commandId: origin.commandId ?? "", what: origin.action ?? command.kind, atMs };
}
