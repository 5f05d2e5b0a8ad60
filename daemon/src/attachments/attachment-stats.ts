import type { Logger } from "pino";
import type { Filter, FilterCounters } from "../datapath/filter.js";
import type { AttachmentStatsView } from "./attachment-view.js";
import type { AttachmentRegistry } from "./registry.js";

/** Stats for some (or all) attachments: kernel counters + DNS counters. Read-only, outside the queue. */
export class AttachmentStats {
  constructor(
    private readonly registry: AttachmentRegistry,
    private readonly filter: Filter,
    private readonly log: Logger,
  ) {}

  async statsFor(ids: readonly string[]): Promise<AttachmentStatsView[]> {
    const counters = await this.countersOf(ids.filter((id) => this.registry.records.has(id)));
    return ids.map((id) => {
      const c = counters.get(id);
      const d = this.registry.records.get(id)?.dns?.stats();
      return {
        id,
        packetsAllowed: c?.allowed ?? 0n,
        packetsBlocked: c?.blocked ?? 0n,
        packetsAudited: c?.audited ?? 0n,
        eventsLost: c?.eventsLost ?? 0n,
        dnsQueriesAllowed: d?.allowed ?? 0n,
        dnsQueriesBlocked: d?.blocked ?? 0n,
      };
    });
  }

  all(): Promise<AttachmentStatsView[]> {
    return this.statsFor([...this.registry.records.keys()]);
  }

  /**
   * Kernel counters, tolerating attachments that vanish meanwhile (a target deleted between
   * taking a List page and reading its counters): those read as zero instead of failing the call.
   */
  private async countersOf(ids: readonly string[]): Promise<Map<string, FilterCounters>> {
    if (ids.length === 0) return new Map();
    try {
      return await this.filter.counters(ids);
    } catch (err) {
      if (ids.length === 1) {
        this.log.debug({ attachmentId: ids[0], err }, "counters unavailable");
        return new Map();
      }
      const out = new Map<string, FilterCounters>();
      for (const id of ids) for (const [k, v] of await this.countersOf([id])) out.set(k, v);
      return out;
    }
  }
}
