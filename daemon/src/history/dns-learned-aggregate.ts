import type { HistoryRecord } from "./history-entry.js";

/** Names shown per aggregate entry; the rest are counted. */
const NAMES_SHOWN = 3;

interface Window {
  added: number;
  refused: number;
  readonly names: Set<string>;
  readonly reasons: Map<string, number>;
}

/**
 * DNS-learned policy changes folded into one history entry per attachment per period (default a
 * minute): "+N addresses opened or extended from a, b, c, … K names; M refused (quota 3, deny-cidr 1)". Never an
 * entry per address: a busy tenant resolving thousands of names must not flood the trail (nor
 * push control-plane changes out of its bounded window).
 */
export class DnsLearnedAggregate {
  private readonly windows = new Map<string, Window>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly emit: (r: HistoryRecord) => void,
    private readonly periodMs: number,
  ) {}

  /** Addresses a DNS answer opened (`added`, new ones only) or refused, for one attachment. */
  note(attachmentId: string, names: readonly string[], added: number, refused: readonly { reason: string; count: number }[]): void {
    const refusedCount = refused.reduce((n, r) => n + r.count, 0);
    if (added === 0 && refusedCount === 0) return;
    let w = this.windows.get(attachmentId);
    if (w === undefined) {
      w = { added: 0, refused: 0, names: new Set(), reasons: new Map() };
      this.windows.set(attachmentId, w);
    }
    w.added += added;
    w.refused += refusedCount;
    for (const n of names) if (w.names.size < 1000) w.names.add(n);
    for (const r of refused) w.reasons.set(r.reason, (w.reasons.get(r.reason) ?? 0) + r.count);
    if (this.timer === null) {
      this.timer = setTimeout(() => this.flush(), this.periodMs);
      this.timer.unref();
    }
  }

  /** Emits one entry per attachment with changes in the window, and starts a new window. */
  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const windows = [...this.windows];
    this.windows.clear();
    for (const [attachmentId, w] of windows) {
      const names = [...w.names];
      const shown = names.slice(0, NAMES_SHOWN).join(", ") + (names.length > NAMES_SHOWN ? `, … ${names.length} names` : "");
      let summary = `+${w.added} addresses opened or extended from ${shown}`;
      if (w.refused > 0) summary += `; ${w.refused} refused (${[...w.reasons].map(([r, n]) => `${r} ${n}`).join(", ")})`;
      this.emit({
        attachmentId,
        source: "dns-learned",
        action: "dns-learned",
        summary,
        result: w.added > 0 ? "applied" : "rejected",
        ...(w.added === 0 ? { error: "every learned address was refused" } : {}),
      });
    }
  }

  close(): void {
    this.flush();
  }
}
