import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import {
  ControlCommandSchema,
  ControlPlane,
  DnsQueryResponseSchema,
  type ControlCommand,
  type DaemonEvent,
  type DnsQueryRequest,
  type DnsQueryResponse,
} from "@netfence/proto/control";
import { serviceDefinition } from "@netfence/proto/grpc";

type Stream = grpc.ServerDuplexStream<DaemonEvent, ControlCommand>;

/**
 * A bare grpc-js ControlPlane server for the client tests: records every DaemonEvent and lets
 * the test push ControlCommands on the current stream. No SDK, so the client is tested against
 * the wire only.
 */
export class TestControlPlane {
  readonly events: DaemonEvent[] = [];
  readonly authorizations: string[] = [];
  readonly dnsQueries: DnsQueryRequest[] = [];
  streams = 0;
  dnsAnswer: Partial<DnsQueryResponse> = { allow: true };
  /** Answer SyncRequest with SyncAck, as every control plane must. */
  autoSyncAck = true;
  /** The automatic SyncAck asks for strict semantics (the SyncAck.strict extension). */
  strict = false;
  private server: grpc.Server | null = null;
  private current: Stream | null = null;
  private waiters: Array<() => void> = [];
  port = 0;

  async start(port = 0, credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
    const server = new grpc.Server();
    server.addService(serviceDefinition(ControlPlane), {
      Connect: (stream: Stream) => {
        this.streams++;
        this.current = stream;
        this.authorizations.push(String(stream.metadata.get("authorization")[0] ?? ""));
        stream.on("data", (ev: DaemonEvent) => {
          this.events.push(ev);
          if (ev.event.case === "sync" && this.autoSyncAck) stream.write(create(ControlCommandSchema, { command: { case: "syncAck", value: { strict: this.strict } } }));
          this.notify();
        });
        stream.on("end", () => stream.end());
        stream.on("error", () => undefined);
        this.notify();
      },
      QueryDns: (call: grpc.ServerUnaryCall<DnsQueryRequest, DnsQueryResponse>, cb: grpc.sendUnaryData<DnsQueryResponse>) => {
        this.dnsQueries.push(call.request);
        cb(null, create(DnsQueryResponseSchema, this.dnsAnswer));
      },
    });
    this.port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`127.0.0.1:${port}`, credentials, (err, p) => (err ? reject(err) : resolve(p)));
    });
    this.server = server;
    return this.port;
  }

  /** Kills the server and every stream, like a crashed control plane. */
  kill(): void {
    this.server?.forceShutdown();
    this.server = null;
    this.current = null;
  }

  send(init: Parameters<typeof create<typeof ControlCommandSchema>>[1]): void {
    if (!this.current) throw new Error("no daemon stream");
    this.current.write(create(ControlCommandSchema, init));
  }

  ofCase<C extends NonNullable<DaemonEvent["event"]["case"]>>(c: C): Array<Extract<DaemonEvent["event"], { case: C }>["value"]> {
    return this.events.filter((e) => e.event.case === c).map((e) => e.event.value as Extract<DaemonEvent["event"], { case: C }>["value"]);
  }

  /** Resolves when `pred` holds, re-checked after every event; rejects after `ms`. */
  async waitFor(pred: () => boolean, ms = 5000, what = "condition"): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 50));
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
