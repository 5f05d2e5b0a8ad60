import type { Logger } from "pino";
import { invalidArgument, NetfenceError } from "@netfence/proto/errors";
import type { AttachmentPolicy, PolicyCommand } from "../policy/policy.js";
import type { AttachmentView } from "../attachments/attachment-view.js";
import type { AttachInput } from "../attachments/attach-flow.js";
import { APPLIED_KEY, DIRECTION_KEY } from "../attachments/attach-options.js";
import { resolveTarget, type TargetRequest } from "../attachments/target.js";
import type { CommandOrigin, HistoryRecord, HistorySource } from "../history/history-entry.js";
import { parsePolicyFile, type DesiredAttachment } from "./policy-file.js";
import { planApply, PlanError, type ApplyPlan, type CurrentAttachment } from "./policy-diff.js";
import { lockoutProblems, type ManagementConfig } from "./management.js";

/**
 * `netfenced apply -f policy.yaml` (issue 15): the standalone policy file made the desired state
 * of the host. Steps: parse and validate the whole file (policy-file.ts; users resolve here, on
 * the host) → check every target exists and no deny rule cuts management access → diff against
 * what earlier applies put in force (attachments marked netfence.applied) → unless a dry run or
 * "no changes": apply.
 *
 * "Atomic" across attachments: the apply holds or is undone as a whole. The order is new
 * attachments first (each created with its final policy), then the policies of kept ones replaced
 * (each one generation swap in the kernel: an attachment is never half-updated), then the
 * attachments the file dropped detached. If a step fails, the steps done are undone in reverse
 * (detached ones re-created with their old policy and the same id, replaced policies restated, new
 * ones detached) and the error says what failed. Between the first and the last step other
 * attachments may briefly hold the new policy while the next still holds the old one; each
 * packet is decided by one whole policy. Applies are serialised.
 */

/** The part of the attachment manager the applier drives. */
export interface ApplyHost {
  list(): AttachmentView[];
  policyOf(id: string): AttachmentPolicy;
  attach(input: AttachInput): Promise<AttachmentView>;
  detach(id: string, source?: HistorySource): Promise<void>;
  applyCommand(id: string, command: PolicyCommand, origin?: CommandOrigin): Promise<void>;
  /** The id holding a target (resolveTarget's key: live, attaching, unadopted or orphaned), or null. */
  holderOf(targetKey: string): string | null;
}

export interface ApplyDeps {
  readonly host: ApplyHost;
  readonly cgroupRoot: string | null;
  readonly management: ManagementConfig;
  readonly record: (r: HistoryRecord) => void;
  readonly logger: Logger;
  readonly netClassDir?: string;
}

export interface ApplyResult {
  readonly changed: boolean;
  readonly applied: boolean;
  readonly changes: readonly string[];
}

const ORIGIN: CommandOrigin = { source: "apply", action: "apply" };

export class PolicyApplier {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: ApplyDeps) {}

  /** Set once a flush ran: applies refuse from then on (the daemon is stopping). */
  private flushed = false;

  /** Serialised: one apply at a time, and never beside a flush. */
  apply(fileName: string, content: string, dryRun: boolean): Promise<ApplyResult> {
    return this.serial(() => {
      if (this.flushed) throw new NetfenceError("FAILED_PRECONDITION", "netfenced was flushed and is stopping: nothing is applied");
      return this.applyNow(fileName, content, dryRun);
    });
  }

  /**
   * `netfenced flush` in the same queue as the applies: an apply in progress finishes (or rolls
   * back) first — never half of its attachments created after the flush removed the rest — and
   * every apply after a successful flush is refused.
   */
  flush<T>(run: () => Promise<T>): Promise<T> {
    return this.serial(async () => {
      const r = await run(); // applies wait in the queue meanwhile
      this.flushed = true; // a flush that failed leaves the daemon running: applies stay possible
      return r;
    });
  }

  private serial<T>(run: () => Promise<T>): Promise<T> {
    const next = this.tail.then(run);
    this.tail = next.catch(() => undefined);
    return next;
  }

  private async applyNow(fileName: string, content: string, dryRun: boolean): Promise<ApplyResult> {
    const { record } = this.deps;
    let plan: ApplyPlan;
    try {
      const file = await parsePolicyFile(fileName, content);
      plan = this.plan(file.attachments);
    } catch (err) {
      if (!dryRun) record({ attachmentId: "", source: "apply", action: "apply", summary: fileName, result: "rejected", error: errorText(err) });
      throw err instanceof PlanError ? invalidArgument(`${fileName}: nothing applied:\n${err.problems.join("\n")}`) : err;
    }
    const changed = plan.lines.length > 0;
    if (dryRun || !changed) {
      if (!dryRun) record({ attachmentId: "", source: "apply", action: "apply", summary: `${fileName}: no changes`, result: "unchanged" });
      return { changed, applied: false, changes: plan.lines };
    }
    await this.execute(plan);
    const summary = `${fileName}: +${plan.add.length} attachment(s), ${plan.change.length} changed, -${plan.remove.length}`;
    record({ attachmentId: "", source: "apply", action: "apply", summary, result: "applied" });
    this.deps.logger.info({ file: fileName, added: plan.add.length, changed: plan.change.length, removed: plan.remove.length }, "policy file applied");
    return { changed, applied: true, changes: plan.lines };
  }

  private plan(desired: readonly DesiredAttachment[]): ApplyPlan {
    const problems: string[] = [];
    for (const d of desired) {
      try {
        const t = resolveTarget(d.target, this.deps.cgroupRoot, this.deps.netClassDir);
        const holder = this.deps.host.holderOf(t.key);
        // Held by another attachment than the file's own of this name: caught here, before anything changes.
        if (holder !== null && holder !== d.name) problems.push(`${d.targetWhere}: attachment "${d.name}": ${t.text} is already attached as ${holder}: detach it first`);
      } catch (err) {
        problems.push(`${d.targetWhere}: attachment "${d.name}": ${errorText(err)}`);
      }
      problems.push(...lockoutProblems(this.deps.management, d.name, d.denyAt));
    }
    const managed = new Map<string, CurrentAttachment>();
    const foreign = new Set<string>();
    for (const view of this.deps.host.list()) {
      if (view.metadata[APPLIED_KEY] === "true") managed.set(view.id, { view, policy: this.deps.host.policyOf(view.id) });
      else foreign.add(view.id);
    }
    let plan: ApplyPlan | null = null;
    try {
      plan = planApply(desired, managed, foreign);
    } catch (err) {
      if (!(err instanceof PlanError)) throw err;
      problems.push(...err.problems);
    }
    if (problems.length > 0 || plan === null) throw new PlanError(problems);
    return plan;
  }

  /** The plan's steps in order; on a failure the done ones are undone in reverse and the error rethrown. */
  private async execute(plan: ApplyPlan): Promise<void> {
    const { host, logger } = this.deps;
    const undo: { what: string; run: () => Promise<void> }[] = [];
    try {
      for (const d of plan.add) {
        await host.attach({ target: d.target, metadata: metadataOf(d.target), id: d.name, policy: d.policy, source: "apply" });
        undo.push({ what: `detach ${d.name}`, run: () => host.detach(d.name, "apply") });
      }
      for (const c of plan.change) {
        await host.applyCommand(c.desired.name, bulkUpdate(c.desired.policy), ORIGIN);
        undo.push({ what: `restore the policy of ${c.desired.name}`, run: () => host.applyCommand(c.desired.name, bulkUpdate(c.before), { source: "apply", action: "apply-rollback" }) });
      }
      for (const r of plan.remove) {
        await host.detach(r.view.id, "apply");
        const target: TargetRequest = r.view.type === "cgroup"
          ? { kind: "cgroup", path: r.view.target }
          : { kind: "interface", name: r.view.target, direction: r.view.metadata[DIRECTION_KEY] === "egress" ? "egress" : "ingress" };
        undo.push({ what: `re-create ${r.view.id}`, run: async () => void (await host.attach({ target, metadata: r.view.metadata, id: r.view.id, policy: r.policy, source: "apply" })) });
      }
    } catch (err) {
      const failed: string[] = [];
      for (const u of undo.reverse()) {
        await u.run().catch((e: unknown) => {
          failed.push(`${u.what}: ${errorText(e)}`);
          logger.error({ err: e, step: u.what }, "apply rollback step failed");
        });
      }
      this.deps.record({ attachmentId: "", source: "apply", action: "apply", summary: "rolled back", result: "rejected", error: errorText(err) });
      const e = NetfenceError.from(err);
      const tail = failed.length === 0 ? `; everything done before was undone (${undo.length} step(s))` : `; undoing failed for: ${failed.join("; ")}`;
      throw new NetfenceError(e.code, `apply failed: ${e.message}${tail}`, { cause: err });
    }
  }
}

function metadataOf(t: TargetRequest): Record<string, string> {
  return t.kind === "interface" ? { [APPLIED_KEY]: "true", [DIRECTION_KEY]: t.direction } : { [APPLIED_KEY]: "true" };
}

/** The whole policy restated (BulkUpdate restates established like audit: absent = sever). */
function bulkUpdate(p: AttachmentPolicy): PolicyCommand {
  const established = { established: p.established ?? "sever" };
  return { kind: "bulk-update", mode: p.mode, audit: p.audit, allowCidrs: p.allowCidrs, denyCidrs: p.denyCidrs, dns: p.dns, ...established };
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
