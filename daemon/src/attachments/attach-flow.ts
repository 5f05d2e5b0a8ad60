import { NetfenceError, isNetfenceError } from "@netfence/proto/errors";
import type { TargetSpec } from "../datapath/filter.js";
import type { AttachmentPolicy } from "../policy/policy.js";
import { PolicyState } from "../policy/policy-state.js";
import { checkPolicyOwnerScopes } from "../policy/owner-scope-check.js";
import type { AttachmentView } from "./attachment-view.js";
import type { PolicySource } from "./policy-source.js";
import { parseAttachOptions } from "./attach-options.js";
import { recordView, type AttachmentRecord } from "./attachment-record.js";
import { resolveTarget, type TargetRequest } from "./target.js";
import { interfaceIndex } from "../datapath/interface-index.js";
import type { AttachmentCore } from "./attachment-core.js";
import type { AttachmentResources } from "./attachment-resources.js";
import type { Reservation } from "./registry.js";
import { policySummary } from "../history/change-summary.js";
import type { HistorySource } from "../history/history-entry.js";
import { invalidArgument } from "@netfence/proto/errors";
import { isAttachmentId } from "@netfence/proto/parse";

export interface AttachInput {
  readonly target: TargetRequest;
  readonly metadata: Readonly<Record<string, string>>;
  /** The attachment id to use (the policy file's attachment name); absent: a new random id. */
  readonly id?: string;
  /** The initial policy (the policy file); absent: asked from the policy source. */
  readonly policy?: AttachmentPolicy;
  /** Who the attach is recorded as in the audit trail (default: the policy source's). */
  readonly source?: HistorySource;
}

export interface TargetLocation {
  /** The cgroup2 mount (or configured override); null when there is none. */
  readonly cgroupRoot: string | null;
  /** Where interface link types are read; default /sys/class/net (unit tests use a fake one). */
  readonly netClassDir?: string;
}

export type RemoveReason = "detached" | "removed" | "error";

/**
 * Attach and detach orchestration. An attach is three steps: reserve (queue: target free, id,
 * slot, DNS port) → ask the policy source (outside the queue: the control plane may take its
 * time) → install (queue: filter attach, DNS server) → persist; any failure rolls back what was
 * done and tells the policy source. Detach, and removal when the target vanished, run in the queue.
 */
export class AttachFlow {
  constructor(
    private readonly core: AttachmentCore,
    private readonly resources: AttachmentResources,
    private readonly policySource: PolicySource,
    private readonly where: TargetLocation,
  ) {}

  async attach(input: AttachInput): Promise<AttachmentView> {
    const { queue, registry, persistence, log } = this.core;
    let settle!: () => void;
    const settled = new Promise<void>((r) => (settle = r));
    const { r, target } = await queue.run("attach-reserve", async () => {
      registry.assertRunning();
      const target = resolveTarget(input.target, this.where.cgroupRoot, this.where.netClassDir);
      const existing = registry.findByKey(target.key);
      if (existing !== null && registry.orphans.has(existing)) {
        throw new NetfenceError(
          "FAILED_PRECONDITION",
          `${target.text} is held by the orphaned filter ${existing}: re-register it with \`netfenced adopt --id ${existing}\` or remove it with \`netfenced detach --orphan ${existing}\``,
          { details: { target: target.text, id: existing } },
        );
      }
      if (existing !== null) {
        throw new NetfenceError("ALREADY_EXISTS", `${target.text} is already attached as ${existing}`, {
          details: { target: target.text, id: existing },
        });
      }
      const options = parseAttachOptions(input.metadata, target.spec.kind);
      const id = input.id ?? registry.uniqueId();
      if (input.id !== undefined) {
        if (!isAttachmentId(id)) throw invalidArgument(`"${id.slice(0, 70)}" is not a valid attachment id`);
        if (registry.records.has(id) || registry.reservations.has(id) || registry.unadopted.has(id) || registry.orphans.has(id)) {
          throw new NetfenceError("ALREADY_EXISTS", `the attachment id "${id}" is taken`, { details: { id } });
        }
      }
      const { port, held } = await this.resources.reservePort();
      const r: Reservation = { id, options, slot: registry.freeSlot(), port, held, key: target.key, settled };
      registry.reservations.set(r.id, r);
      return { r, target };
    });
    const alog = log.child({ attachmentId: r.id });
    const view: AttachmentView = {
      id: r.id,
      target: target.text,
      type: target.spec.kind,
      mode: "disabled",
      audit: false,
      dnsMode: "disabled",
      dnsAddress: this.resources.dnsAddress(r.port),
      metadata: { ...input.metadata },
      attachedAtMs: this.core.now(),
      method: target.spec.kind === "interface" ? "tcx" : "cgroup-link",
    };
    let subscribed = false;
    let policy: AttachmentPolicy;
    try {
      if (input.policy !== undefined) policy = input.policy;
      else {
        policy = await this.policySource.subscribe(view);
        subscribed = true;
      }
      const rec = await queue.run("attach-install", () => this.install(r, target.spec, target.text, view, policy));
      const source = input.policy !== undefined ? "local-api" : (this.policySource.origin ?? "control-plane");
      const what = input.policy !== undefined ? "apply" : source === "default-policy" ? "default-policy" : "subscribed-ack";
      rec.state.origins.noteInitial({ source, commandId: "", what, atMs: this.core.now() });
      try {
        await persistence.persist();
      } catch (err) {
        // Not durable → not attached: a restart would find pins without a record and remove them.
        subscribed = false;
        await queue.run("detach", () => this.remove(rec.id, "error")).catch(() => undefined);
        throw err;
      }
      alog.info({ target: rec.targetText, type: rec.target.kind, method: rec.method, dnsAddress: rec.dnsAddress }, "attached");
      this.core.history.record({
        attachmentId: rec.id, source: input.source ?? this.policySource.historySource ?? "default-policy", action: "attach",
        summary: `${rec.targetText}: ${policySummary(policy)}`, result: "applied",
      });
      return recordView(rec);
    } catch (err) {
      alog.warn({ err, target: target.text }, "attach failed; rolled back");
      this.core.history.record({
        attachmentId: r.id, source: input.source ?? this.policySource.historySource ?? "default-policy", action: "attach",
        summary: target.text, result: "rejected", error: err instanceof Error ? err.message : String(err),
      });
      if (subscribed) this.policySource.unsubscribed(r.id, "error", err instanceof Error ? err.message : String(err));
      throw NetfenceError.from(err);
    } finally {
      registry.reservations.delete(r.id);
      await r.held?.release(); // no-op once its DNS server took the sockets over
      settle();
    }
  }

  private async install(r: Reservation, spec: TargetSpec, text: string, view: AttachmentView, policy: AttachmentPolicy): Promise<AttachmentRecord> {
    const { registry, filter, log } = this.core;
    registry.assertRunning();
    // The target may have vanished while the control plane was answering.
    const ifindex = spec.kind === "interface" ? interfaceIndex(spec.name) : 0;
    if (spec.kind === "interface" && ifindex === null) {
      throw new NetfenceError("NOT_FOUND", `interface "${spec.name}" disappeared during attach`);
    }
    checkPolicyOwnerScopes(policy, spec.kind);
    const state = new PolicyState(policy);
    const result = await filter.attach(this.resources.attachSpec(r.id, r.slot, spec, r.port, r.options), state.compile(this.core.now()));
    const rec: AttachmentRecord = {
      id: r.id,
      slot: r.slot,
      target: spec,
      key: r.key,
      targetText: text,
      dnsPort: r.port,
      dnsAddress: view.dnsAddress,
      metadata: view.metadata,
      options: r.options,
      // The time it became live: List pages are ordered by it, so an attach that waited for its
      // SubscribedAck does not land behind a page token already handed out.
      attachedAtMs: this.core.now(),
      method: result.method,
      ifindex: ifindex ?? result.ifindex,
      state,
      dns: null,
      stored: null,
    };
    try {
      rec.dns = await this.resources.startDns(rec, r.held ?? undefined);
    } catch (err) {
      await filter.detach(r.id).catch((e: unknown) => log.error({ attachmentId: r.id, err: e }, "rollback detach failed"));
      throw new NetfenceError("UNAVAILABLE", `DNS server for ${r.id} could not listen on ${view.dnsAddress}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    registry.records.set(rec.id, rec);
    return rec;
  }

  /** `source`: who the detach is recorded as in the audit trail (default the local API, "cli"). */
  async detach(id: string, source: HistorySource = "cli"): Promise<void> {
    await this.core.queue.run("detach", () => this.remove(id, "detached", source));
    await this.core.persistence.persistOrLog();
  }

  /** The target watcher saw the interface/cgroup vanish. */
  async targetGone(id: string): Promise<void> {
    await this.core.queue.run("target-gone", async () => {
      if (!this.core.registry.records.has(id)) return;
      await this.remove(id, "removed");
    });
    await this.core.persistence.persistOrLog();
  }

  /** Removes a live or unadopted attachment. Runs in the queue. */
  private async remove(id: string, reason: RemoveReason, source: HistorySource = "cli"): Promise<void> {
    const { registry, filter, log } = this.core;
    const rec = registry.records.get(id);
    if (rec === undefined && registry.unadopted.has(id)) {
      await filter.detach(id).catch((err: unknown) => {
        if (!(isNetfenceError(err) && err.code === "NOT_FOUND")) throw err;
      });
      registry.unadopted.delete(id);
      log.info({ attachmentId: id, reason }, "unadopted attachment removed");
      this.policySource.unsubscribed(id, reason);
      return;
    }
    if (rec === undefined && registry.orphans.has(id)) {
      throw new NetfenceError("NOT_FOUND", `"${id}" is an orphaned filter, not an attachment: remove it with \`netfenced detach --orphan ${id}\` or re-register it with \`netfenced adopt --id ${id}\``, { details: { id } });
    }
    if (rec === undefined) throw new NetfenceError("NOT_FOUND", `no attachment with id "${id}"`, { details: { id } });
    try {
      await filter.detach(id);
    } catch (err) {
      if (!(isNetfenceError(err) && err.code === "NOT_FOUND")) throw err;
    }
    registry.records.delete(id);
    await rec.dns?.stop().catch((err: unknown) => log.warn({ attachmentId: id, err }, "DNS server stop failed"));
    if (reason !== "error") {
      this.core.history.record({
        attachmentId: id, source: reason === "detached" ? source : "daemon", action: reason === "detached" ? "detach" : "removed",
        summary: reason === "detached" ? rec.targetText : `${rec.targetText} vanished`, result: "applied",
      });
    }
    log.info(
      { attachmentId: id, target: rec.targetText, reason },
      reason === "detached" ? "detached" : reason === "removed" ? "target vanished; attachment removed" : "attach rolled back",
    );
    this.policySource.unsubscribed(id, reason);
  }
}
