import type { Logger } from "pino";
import type { AttachmentStatsView } from "../attachments/attachment-view.js";
import { heartbeatEvent } from "./wire-events.js";
import type { HitsDelta } from "../attachments/hits-tracker.js";
import type { DaemonEvent } from "@netfence/proto/control";

/**
 * The Heartbeat of one stream: every `intervalMs` the host's per-attachment stats (and the rule
 * hit counts that moved), sent with
 * `send` (which drops it when the stream is no longer current). A slow stats read never piles up
 * heartbeats behind it.
 */
export class HeartbeatTimer {
  private timer: NodeJS.Timeout | null = null;
  private inFlight = false;

  constructor(
    private readonly intervalMs: number,
    private readonly stats: () => Promise<readonly AttachmentStatsView[]>,
    private readonly log: Logger,
    /** Per-rule hit counts that moved since the last heartbeat (AttachmentStats 100..101), when the host has them. */
    private readonly ruleHits?: () => Promise<ReadonlyMap<string, HitsDelta>>,
  ) {}

  start(send: (event: DaemonEvent) => void): void {
    this.stop();
    this.timer = setInterval(() => void this.beat(send), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private async beat(send: (event: DaemonEvent) => void): Promise<void> {
    if (this.inFlight) return;
    this.inFlight = true;
    try {
      const [stats, hits] = await Promise.all([this.stats(), this.ruleHits?.()]);
      send(heartbeatEvent(stats, hits));
    } catch (err) {
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, "heartbeat skipped: reading stats failed");
    } finally {
      this.inFlight = false;
    }
  }
}
