import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { TamperReportSchema, type TamperReport as WireTamperReport } from "@netfence/proto/control";
import type { TamperReport } from "./attachments/tamper-watch.js";

/**
 * Forwards tamper reports to the control plane (DaemonEvent oneof 102, TamperReport). Reports made
 * while the stream is down (e.g. found at start, before the first connect) wait — at most `max`,
 * the oldest dropped first — and are sent again every `retryMs` until the stream takes them.
 */
export class TamperForwarder {
  private readonly pending: WireTamperReport[] = [];
  private timer: NodeJS.Timeout | null = null;
  dropped = 0;

  constructor(
    private readonly publish: (report: WireTamperReport) => boolean,
    private readonly retryMs = 1000,
    private readonly max = 1000,
  ) {}

  /** The manager's onTamper hook. */
  report(r: TamperReport): void {
    const wire = create(TamperReportSchema, { attachmentId: r.attachmentId, kind: r.kind, detail: r.detail, time: timestampFromMs(r.timeMs), restored: r.restored });
    if (this.pending.length === 0 && this.publish(wire)) return;
    if (this.pending.length >= this.max) {
      this.pending.shift();
      this.dropped++;
    }
    this.pending.push(wire);
    if (this.timer === null) {
      this.timer = setInterval(() => this.flush(), this.retryMs);
      this.timer.unref();
    }
  }

  private flush(): void {
    while (this.pending.length > 0 && this.publish(this.pending[0]!)) this.pending.shift();
    if (this.pending.length === 0) this.stop();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
