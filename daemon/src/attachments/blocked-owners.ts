import type { KernelPacketEvent } from "../datapath/filter.js";

/**
 * Blocked attempts by socket owner, per attachment (issue 15, seed 004: "blocked attempts logged
 * with the user"; shown by `netfenced status --rules`). Fed from the daemon's packet events
 * (blocked and audited ones; an event folding N identical ones counts 1 + N). Bounded: the first
 * `maxOwners` distinct uids of an attachment (default 1,000) get their own counters, later ones
 * count together under "other"; events without a known owner (TC attachments, sockets created
 * before the attachment) count under "unknown". Counts live in memory since the daemon started.
 *
 * API (for ListRules / status --rules):
 *   note(event)            count one event (allowed events are ignored)
 *   forAttachment(id)      the attachment's counts, most blocked first (ties: lower uid first)
 *   forget(id)             drop an attachment's counts (detach)
 *   countFrom(events)      consume an event stream into note() until stop()
 */

export interface OwnerCount {
  /** The uid; null for the "unknown" and "other" rows. */
  readonly uid: number | null;
  /** "uid" for one owner, "unknown" (no owner known) or "other" (beyond the per-attachment bound). */
  readonly kind: "uid" | "unknown" | "other";
  /** The user name from the newest event that had one; null = none known. */
  readonly user: string | null;
  readonly blocked: number;
  /** Would-be blocks in audit mode (they passed). */
  readonly audited: number;
  readonly lastMs: number;
}

interface Counter {
  user: string | null;
  blocked: number;
  audited: number;
  lastMs: number;
}

const UNKNOWN = -1;
const OTHER = -2;

export class BlockedOwners {
  private readonly byAttachment = new Map<string, Map<number, Counter>>();

  constructor(private readonly maxOwners = 1000) {}

  note(e: KernelPacketEvent): void {
    if (e.attachmentId === null || e.verdict === "allowed") return;
    let m = this.byAttachment.get(e.attachmentId);
    if (m === undefined) this.byAttachment.set(e.attachmentId, (m = new Map()));
    let key = e.uid == null ? UNKNOWN : e.uid;
    if (key >= 0 && !m.has(key) && this.owners(m) >= this.maxOwners) key = OTHER;
    let c = m.get(key);
    if (c === undefined) m.set(key, (c = { user: null, blocked: 0, audited: 0, lastMs: 0 }));
    const n = 1 + e.suppressed;
    if (e.verdict === "audit") c.audited += n;
    else c.blocked += n;
    if (key >= 0 && e.user != null) c.user = e.user;
    if (e.timeMs > c.lastMs) c.lastMs = e.timeMs;
  }

  forAttachment(id: string): OwnerCount[] {
    const m = this.byAttachment.get(id);
    if (m === undefined) return [];
    const out: OwnerCount[] = [];
    for (const [key, c] of m) {
      const kind = key === UNKNOWN ? "unknown" : key === OTHER ? "other" : "uid";
      out.push({ uid: key >= 0 ? key : null, kind, user: c.user, blocked: c.blocked, audited: c.audited, lastMs: c.lastMs });
    }
    const rank = (o: OwnerCount): number => (o.kind === "uid" ? 0 : o.kind === "unknown" ? 1 : 2);
    return out.sort((a, b) => b.blocked + b.audited - (a.blocked + a.audited) || rank(a) - rank(b) || (a.uid ?? 0) - (b.uid ?? 0));
  }

  /** Counts every event of `source` (the daemon's event stream) until stop(). */
  countFrom(source: AsyncIterable<KernelPacketEvent>): { stop(): Promise<void> } {
    const it = source[Symbol.asyncIterator]();
    let stopped = false;
    const done = (async () => {
      try {
        for (let r = await it.next(); !r.done && !stopped; r = await it.next()) this.note(r.value);
      } catch {
        // the event source failed (filter closing): counting stops
      }
    })();
    return {
      stop: async () => {
        stopped = true;
        await it.return?.();
        await done;
      },
    };
  }

  forget(id: string): void {
    this.byAttachment.delete(id);
  }

  private owners(m: Map<number, Counter>): number {
    return m.size - (m.has(UNKNOWN) ? 1 : 0) - (m.has(OTHER) ? 1 : 0);
  }
}
