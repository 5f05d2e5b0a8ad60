import { NetfenceError, isNetfenceError } from "@netfence/proto/errors";
import type { AttachmentView } from "./attachment-view.js";
import type { PolicySource } from "./policy-source.js";
import { recordView } from "./attachment-record.js";
import { orphanKey, type OrphanInfo } from "./orphan.js";
import { orphanRecord } from "./orphan-adoption.js";
import { policySummary } from "../history/change-summary.js";
import type { AttachmentCore } from "./attachment-core.js";
import type { AttachmentResources } from "./attachment-resources.js";
import { restoreRuleIds, zeroAllRuleHits } from "./rule-ids-restore.js";

/**
 * Orphans: pinned filters the state store does not account for (found at start-up, kept
 * enforcing). An operator re-registers one (its policy read back from the kernel maps) or
 * removes it on purpose; both in the queue.
 */
export class OrphanOps {
  constructor(
    private readonly core: AttachmentCore,
    private readonly resources: AttachmentResources,
    private readonly policySource: PolicySource,
  ) {}

  list(): OrphanInfo[] {
    return [...this.core.registry.orphans.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /**
   * Re-registers an orphan as a live attachment, its policy read back from the kernel maps (same
   * id, slot, pins and DNS port). The control plane hears Subscribed and may answer with a policy.
   */
  async adopt(id: string): Promise<AttachmentView> {
    const { registry, filter, log } = this.core;
    const view = await this.core.queue.run("orphan-adopt", async () => {
      registry.assertRunning();
      const o = registry.orphans.get(id);
      if (o === undefined) throw new NetfenceError("NOT_FOUND", `no orphaned attachment "${id}"`, { details: { id } });
      const key = orphanKey(o);
      const holder = key === null ? null : registry.findByKey(key, id);
      if (holder !== null) throw new NetfenceError("FAILED_PRECONDITION", `${o.targetText} is already attached as ${holder}`, { details: { id, holder } });
      if ([...registry.records.values()].some((r) => r.dnsPort === o.dnsPort)) {
        throw new NetfenceError("FAILED_PRECONDITION", `the DNS port ${o.dnsPort} of orphan ${id} is used by another attachment`, { details: { id } });
      }
      const { portMin, portMax } = this.resources.portRange;
      // The pins were read at start; read them again: deadlines passed since change what the kernel
      // enforces (an expired scoped deny hides the allow under it: scope-decode.ts refuses that).
      const fresh: OrphanInfo = o.pinned === null ? o : { ...o, pinned: await filter.inspect(id) };
      const rec = orphanRecord(fresh, { now: this.core.now(), dnsAddress: (port) => this.resources.dnsAddress(port), portMin, portMax });
      if (!o.attached) {
        const r = await filter.relink(id, rec.target, this.resources.method);
        log.warn({ attachmentId: id, method: r.method }, "orphan was not attached any more; attached it again");
      }
      // The kernel entries carry the earlier daemon's rule ids: each rule read back takes its id (and count).
      await restoreRuleIds(filter, id, rec.state, this.core.now()).catch(async (err: unknown) => {
        log.warn({ attachmentId: id, err }, "rule ids not restored from the kernel; rule hit counts restart");
        await zeroAllRuleHits(filter, id).catch(() => undefined);
      });
      rec.dns = await this.resources.startDns(rec).catch((err: unknown) => {
        log.error({ attachmentId: id, err }, "DNS server of the adopted orphan could not start; retried by the integrity check");
        return null;
      });
      registry.orphans.delete(id);
      registry.records.set(id, rec);
      log.warn({ attachmentId: id, target: rec.targetText, mode: rec.state.mode, entries: o.entries }, "orphaned attachment adopted; its policy was read back from the kernel");
      this.core.history.record({
        attachmentId: id, source: "cli", action: "adopt",
        summary: `${rec.targetText}: policy read back from the kernel: ${policySummary(rec.state.toPolicy())}`, result: "applied",
      });
      return recordView(rec);
    });
    await this.core.persistence.persistOrLog();
    this.policySource.adopted?.(view);
    return view;
  }

  /** Removes an orphan's filter and pins on purpose. */
  async detach(id: string): Promise<void> {
    const { registry, filter, log } = this.core;
    await this.core.queue.run("orphan-detach", async () => {
      if (!registry.orphans.has(id)) throw new NetfenceError("NOT_FOUND", `no orphaned attachment "${id}"`, { details: { id } });
      try {
        await filter.detach(id);
      } catch (err) {
        if (!(isNetfenceError(err) && err.code === "NOT_FOUND")) throw err;
      }
      registry.orphans.delete(id);
      log.warn({ attachmentId: id }, "orphaned attachment detached on request");
      this.core.history.record({ attachmentId: id, source: "cli", action: "detach-orphan", summary: "orphaned filter removed", result: "applied" });
    });
  }
}
