import type { KernelPacketEvent } from "./datapath/filter.js";
import type { PacketEvent } from "@netfence/proto/control";
import { packetEventToWire } from "./rpc/packet-event.js";

/** Where the forwarder sends batches: the control-plane connection. */
export interface EventSink {
  /** The control plane asked for packet events on its current stream (SyncAck.packet_events). */
  wantsPacketEvents(): boolean;
  /** Sends one PacketEventBatch; false when it could not (disconnected, slow stream): dropped. */
  publishEvents(batch: readonly PacketEvent[]): boolean;
}

export interface EventForwarderOptions {
  readonly intervalMs?: number;
  readonly maxBatch?: number;
  /** The attachment's metadata for each event (PacketEvent.metadata). */
  readonly metadataOf?: (id: string) => Readonly<Record<string, string>> | undefined;
  /** Called with the number of events dropped each time some are (metric). */
  readonly onDropped?: (n: number) => void;
}

/**
 * Forwards packet events to the control plane as PacketEventBatch — only while the control plane
 * asked for them (SyncAck.packet_events; a Go-original control plane never does, and never sees
 * one). At most one batch per `intervalMs` and `maxBatch` events per batch: when more arrive
 * before the flush, the oldest are dropped; a batch the stream cannot take (disconnected, or
 * gRPC's backlog over its bound) is dropped whole. Every dropped event is counted (`dropped`):
 * events are observability, never state, so they must not grow memory without bound.
 */
export class EventForwarder {
  private buffer: PacketEvent[] = [];
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  dropped = 0;
  private readonly intervalMs: number;
  private readonly maxBatch: number;

  constructor(
    private readonly events: AsyncIterable<KernelPacketEvent>,
    private readonly sink: EventSink,
    private readonly opts: EventForwarderOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 1000;
    this.maxBatch = opts.maxBatch ?? 1000;
  }

  start(): void {
    this.timer = setInterval(() => this.flush(), this.intervalMs);
    this.timer.unref();
    void (async () => {
      try {
        for await (const e of this.events) {
          if (this.stopped) return;
          if (!this.sink.wantsPacketEvents()) continue; // not asked: nothing kept, nothing counted
          if (this.buffer.length >= this.maxBatch) {
            this.buffer.shift();
            this.drop(1);
          }
          this.buffer.push(packetEventToWire(e, e.attachmentId === null ? undefined : this.opts.metadataOf?.(e.attachmentId)));
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
    if (!this.sink.publishEvents(batch)) this.drop(batch.length);
  }

  private drop(n: number): void {
    this.dropped += n;
    this.opts.onDropped?.(n);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
