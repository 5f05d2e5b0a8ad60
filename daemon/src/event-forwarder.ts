import type { KernelPacketEvent } from "./datapath/filter.js";
import type { PacketEvent } from "@netfence/proto/control";
import { packetEventToWire } from "./rpc/packet-event.js";

/**
 * Forwards kernel packet events to the control plane as PacketEventBatch, at most one batch per
 * `intervalMs` and `maxBatch` events per batch (older ones are dropped while the stream is down —
 * events are observability, never state).
 */
export class EventForwarder {
  private buffer: PacketEvent[] = [];
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  dropped = 0;

  constructor(
    private readonly events: AsyncIterable<KernelPacketEvent>,
    private readonly publish: (batch: readonly PacketEvent[]) => boolean,
    private readonly intervalMs = 1000,
    private readonly maxBatch = 1000,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.flush(), this.intervalMs);
    this.timer.unref();
    void (async () => {
      try {
        for await (const e of this.events) {
          if (this.stopped) return;
          if (this.buffer.length >= this.maxBatch) {
            this.buffer.shift();
            this.dropped++;
          }
          this.buffer.push(packetEventToWire(e));
        }
      } catch {
        // The event source ended with an error (filter closing): forwarding simply stops.
      }
    })();
  }

  private flush(): void {
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    if (!this.publish(batch)) this.dropped += batch.length;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
