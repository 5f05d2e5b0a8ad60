import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { ControlPlane, DaemonEventSchema, type ControlCommand, type DaemonEvent } from "@netfence/proto/control";
import { methodDefinition } from "@netfence/proto/grpc";

const CONNECT = methodDefinition(ControlPlane.method.connect);

/**
 * Many lightweight simulated daemons in one process, speaking the real netfence.v1 protocol to a
 * list of control-plane addresses: SyncRequest with their attachments, CommandResult for every
 * command carrying a command_id (echoing the policy_version of SubscribedAck/BulkUpdate, as a
 * Netfence daemon does once the kernel holds it), and failover: when the stream ends or the
 * address is unreachable, reconnect to the next address after a short jittered delay.
 */
export interface SimAttachment {
  readonly id: string;
  readonly metadata: Record<string, string>;
}

export class SimDaemon {
  call: grpc.ClientDuplexStream<DaemonEvent, ControlCommand> | null = null;
  synced = false;
  /** Index into the fleet's addresses of the current (or last) stream. */
  addressIndex: number;
  /** attachment id → the policy version last applied (echoed). */
  readonly versions = new Map<string, string>();
  bulkUpdates = 0;
  connects = 0;
  /** attachment id → performance.now() of its last BulkUpdate (benchmarks). */
  readonly bulkAt = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    readonly id: string,
    readonly attachments: readonly SimAttachment[],
    private readonly fleet: SimFleet,
    start: number,
  ) {
    this.addressIndex = start;
  }

  connect(): void {
    if (this.fleet.stopped) return;
    this.connects++;
    const client = this.fleet.client(this.addressIndex);
    const call = client.makeBidiStreamRequest(CONNECT.path, CONNECT.requestSerialize, CONNECT.responseDeserialize, new grpc.Metadata(), {}) as grpc.ClientDuplexStream<DaemonEvent, ControlCommand>;
    this.call = call;
    let ended = false;
    const onEnd = (): void => {
      if (ended) return;
      ended = true;
      if (this.call === call) {
        this.call = null;
        this.synced = false;
        this.addressIndex = (this.addressIndex + 1) % this.fleet.addresses.length;
        if (!this.fleet.stopped) this.timer = setTimeout(() => this.connect(), 50 + Math.random() * 250);
      }
    };
    call.on("data", (cmd: ControlCommand) => {
      const c = cmd.command;
      let version = "";
      if (c.case === "syncAck") this.synced = true;
      else if (c.case === "subscribedAck") version = c.value.policyVersion;
      else if (c.case === "bulkUpdate") {
        version = c.value.policyVersion;
        this.bulkUpdates++;
        this.bulkAt.set(cmd.id, performance.now());
      }
      if (version !== "") this.versions.set(cmd.id, version);
      if (cmd.commandId !== "") {
        call.write(create(DaemonEventSchema, { event: { case: "commandResult", value: { commandId: cmd.commandId, attachmentId: cmd.id, applied: true, policyVersion: version } } }));
      }
    });
    call.on("error", onEnd);
    call.on("end", onEnd);
    call.on("close", onEnd);
    call.write(create(DaemonEventSchema, {
      event: {
        case: "sync",
        value: {
          daemonId: this.id,
          hostname: `host-${this.id}`,
          metadata: {},
          attachments: this.attachments.map((a) => ({ id: a.id, target: `veth-${a.id}`, type: 1, mode: 2, dnsMode: 1, metadata: a.metadata })),
        },
      },
    }));
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const call = this.call;
    this.call = null;
    call?.cancel();
  }
}

export class SimFleet {
  readonly daemons: SimDaemon[] = [];
  stopped = false;
  private readonly clients = new Map<number, grpc.Client>();

  constructor(readonly addresses: readonly string[]) {}

  client(index: number): grpc.Client {
    let c = this.clients.get(index);
    if (c === undefined) {
      // Own subchannel pool per client: a dead address's connection state never leaks into another's.
      c = new grpc.Client(this.addresses[index]!, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1, "grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 500 });
      this.clients.set(index, c);
    }
    return c;
  }

  /** Adds and connects `count` daemons, spread round-robin over the addresses (or each at `start(n)`). */
  add(count: number, attachmentsEach: number, labels: (daemon: number, attachment: number) => Record<string, string>, start?: (daemon: number) => number): void {
    const base = this.daemons.length;
    for (let i = 0; i < count; i++) {
      const n = base + i;
      const atts = Array.from({ length: attachmentsEach }, (_, k) => ({ id: `sim${n}-${k}`, metadata: labels(n, k) }));
      const d = new SimDaemon(`sim-${n}`, atts, this, start ? start(n) : n % this.addresses.length);
      this.daemons.push(d);
      d.connect();
    }
  }

  attachments(): Array<{ daemon: SimDaemon; id: string }> {
    return this.daemons.flatMap((d) => d.attachments.map((a) => ({ daemon: d, id: a.id })));
  }

  stop(): void {
    this.stopped = true;
    for (const d of this.daemons) d.stop();
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
