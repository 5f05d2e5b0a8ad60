import net from "node:net";
import type { KernelPacketEvent } from "../datapath/filter.js";
import { EventFanout } from "../datapath/event-fanout.js";

/**
 * Events the DNS side reports on the daemon's event stream (WatchEvents, `netfenced events`,
 * PacketEventBatch to the control plane), in the same PacketEvent shape as the kernel's blocked
 * packets, verdict "blocked":
 *
 *   reason                 dst                      rule
 *   dns-rebind-guard       the refused address      the name that produced it (+ why, after a space)
 *   dns-quota-learned      the address not added    the name
 *   dns-quota-qps          the DNS server address   "qps=<quota>" (folded per source, whatever the names)
 *   dns-quota-inflight     the DNS server address   "inflight=<quota>"
 *   dns-quota-tcp          the DNS server address   "tcp-connections" | "tcp-per-source"
 *   dns-foreign-source     the DNS server address   "" (a source this server does not answer)
 *   dns-query-type         the DNS server address   "<TYPE> <name>"
 *
 * Like the kernel's, identical events (attachment, reason, source, destination, rule) within
 * 10 s are folded: the first is published, the rest counted and carried as `suppressed` by the
 * next one published after the window. Every event, folded or not, reaches `onEvent` (metrics).
 */

export type DnsEventReason =
  | "dns-rebind-guard"
  | "dns-quota-learned"
  | "dns-quota-qps"
  | "dns-quota-inflight"
  | "dns-quota-tcp"
  | "dns-foreign-source"
  | "dns-query-type";

export interface DnsEvent {
  readonly attachmentId: string;
  readonly reason: DnsEventReason;
  readonly src: string;
  readonly srcPort: number;
  readonly dst: string;
  readonly dstPort: number;
  /** 17 UDP, 6 TCP, 0 none (an address not opened). */
  readonly protocol: number;
  readonly rule: string;
}

/** What DNS servers and the learned-address writer report to. */
export type DnsEventSink = (event: DnsEvent) => void;

export const FOLD_WINDOW_MS = 10_000;
const MAX_KEYS = 4096;

interface Fold {
  firstMs: number;
  suppressed: number;
}

export class DnsEventReporter {
  private readonly fanout = new EventFanout<KernelPacketEvent>();
  private readonly folds = new Map<string, Fold>();
  private lastSweepMs = 0;

  constructor(
    private readonly onEvent: (event: DnsEvent) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /** Bound as a DnsEventSink. */
  readonly report: DnsEventSink = (event) => {
    this.onEvent(event);
    const now = this.now();
    this.sweep(now);
    const key = `${event.attachmentId}|${event.reason}|${event.src}|${event.dst}|${event.rule}`;
    const fold = this.folds.get(key);
    if (fold !== undefined && now - fold.firstMs < FOLD_WINDOW_MS) {
      fold.suppressed++;
      return;
    }
    const suppressed = fold?.suppressed ?? 0;
    if (this.folds.size >= MAX_KEYS) this.folds.clear();
    this.folds.set(key, { firstMs: now, suppressed: 0 });
    this.fanout.publish(toPacketEvent(event, now, suppressed));
  };

  events(): AsyncIterable<KernelPacketEvent> {
    return this.fanout.subscribe();
  }

  close(): void {
    this.fanout.close();
  }

  /** Forgets folds older than a minute (at most once every 10 s). */
  private sweep(now: number): void {
    if (now - this.lastSweepMs < FOLD_WINDOW_MS) return;
    this.lastSweepMs = now;
    for (const [key, fold] of this.folds) if (now - fold.firstMs > 60_000) this.folds.delete(key);
  }
}

export function toPacketEvent(e: DnsEvent, timeMs: number, suppressed: number): KernelPacketEvent {
  const family = net.isIPv6(e.dst) || net.isIPv6(e.src) ? 6 : 4;
  return {
    timeMs,
    slot: 0,
    attachmentId: e.attachmentId,
    family,
    protocol: e.protocol,
    src: e.src,
    dst: e.dst,
    srcPort: e.srcPort,
    dstPort: e.dstPort,
    verdict: "blocked",
    reason: e.reason,
    rule: e.rule,
    suppressed,
  };
}
