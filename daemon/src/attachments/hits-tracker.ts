import type { Logger } from "pino";
import type { Filter } from "../datapath/filter.js";
import type { AttachmentRegistry } from "./registry.js";
import { ruleTextOf } from "./rules-view.js";

/** One rule's counter as a heartbeat carries it (AttachmentStats.rule_hits). */
export interface RuleHitsView {
  readonly ruleId: number;
  readonly rule: string;
  /** Total since the rule got its id (not a delta). */
  readonly packets: bigint;
  /** Wall-clock ms of the last hit; 0 = never. */
  readonly lastHitMs: number;
}

export interface HitsDelta {
  readonly hits: readonly RuleHitsView[];
  /** Rules that moved but did not fit this heartbeat: sent in a later one. */
  readonly omitted: number;
}

/** Rules per attachment per heartbeat (the ones that moved most go first). */
export const MAX_RULE_HITS_PER_HEARTBEAT = 256;

/**
 * The rule hit counts a heartbeat carries: per attachment, only the rules whose count changed since
 * the count last sent, at most MAX_RULE_HITS_PER_HEARTBEAT (a rule left out stays "changed" and goes
 * in a later heartbeat). Read outside the queue, one loader read per attachment, covering only the
 * ids the attachment has handed out. Attachments whose counters cannot be read are left out.
 */
export class HitsTracker {
  private readonly sent = new Map<string, Map<number, bigint>>();

  constructor(
    private readonly registry: AttachmentRegistry,
    private readonly filter: Filter,
    private readonly log: Logger,
    private readonly limit = MAX_RULE_HITS_PER_HEARTBEAT,
  ) {}

  async collect(): Promise<Map<string, HitsDelta>> {
    const out = new Map<string, HitsDelta>();
    for (const id of this.sent.keys()) if (!this.registry.records.has(id)) this.sent.delete(id);
    for (const rec of [...this.registry.records.values()]) {
      let hits;
      try {
        hits = await this.filter.ruleHits(rec.id, rec.state.ruleIds.highWater);
      } catch (err) {
        this.log.debug({ attachmentId: rec.id, err }, "rule hit counters unavailable");
        continue;
      }
      let prev = this.sent.get(rec.id);
      if (prev === undefined) this.sent.set(rec.id, (prev = new Map()));
      const moved = hits
        .map((h) => ({ h, delta: h.packets - (prev.get(h.ruleId) ?? 0n) }))
        .filter((x) => x.delta !== 0n)
        .sort((a, b) => (b.delta > a.delta ? 1 : b.delta < a.delta ? -1 : a.h.ruleId - b.h.ruleId));
      const taken = moved.slice(0, this.limit);
      for (const { h } of taken) prev.set(h.ruleId, h.packets);
      out.set(rec.id, {
        hits: taken.map(({ h }) => ({ ruleId: h.ruleId, rule: ruleTextOf(h.ruleId, rec.state), packets: h.packets, lastHitMs: h.lastHitMs })),
        omitted: moved.length - taken.length,
      });
    }
    return out;
  }
}
