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
  type PacketEvent,
  type TamperReport,
} from "@netfence/proto/control";
import { serviceDefinition } from "@netfence/proto/grpc";
import { canonicalQueryName } from "@netfence/proto/parse";
import { stderrLogger, type SdkLogger } from "./logger.js";
import { DaemonHandle, type CommandStream } from "./daemon-handle.js";
import { attachmentFromWire, daemonFromWire, reasonFromWire, statsFromWire } from "./from-wire.js";
import type {
  AttachmentInfo,
  AttachmentStatsInfo,
  CommandOutcome,
  DnsDecision,
  DnsQuery,
  PolicySpec,
  UnsubscribeReason,
} from "./policy-spec.js";
import { policyToSubscribedAck } from "./to-wire.js";

/**
 * What a control-plane author implements. Hooks of one daemon run one at a time in the order the
 * daemon's events arrived (a slow hook delays that daemon's later events, never other daemons);
 * `daemon.send()` results are delivered outside that order, so a hook may await them.
 */
export interface ControlPlaneHooks {
  /** After SyncAck was sent: the daemon (re)connected; `daemon.attachments` lists what it has. Reconcile here. */
  onDaemonSynced?(daemon: DaemonHandle): void | Promise<void>;
  /** A new attachment waits for its initial policy (sent as SubscribedAck). Throwing sends no ack: the attach times out. */
  onSubscribed(daemon: DaemonHandle, attachment: AttachmentInfo): PolicySpec | Promise<PolicySpec>;
  /** The daemon's CommandResult for that SubscribedAck (applied, with the policy version it holds, or rejected). */
  onSubscribedResult?(daemon: DaemonHandle, attachmentId: string, outcome: CommandOutcome): void | Promise<void>;
  onUnsubscribed?(daemon: DaemonHandle, attachmentId: string, reason: UnsubscribeReason, error: string): void | Promise<void>;
  onHeartbeat?(daemon: DaemonHandle, stats: readonly AttachmentStatsInfo[]): void | Promise<void>;
  /** DNS proxy mode. Without this hook QueryDns answers UNIMPLEMENTED (the daemon then fails closed). */
  onQueryDns?(query: DnsQuery, daemon: DaemonHandle | undefined): DnsDecision | Promise<DnsDecision>;
  onPacketEvents?(daemon: DaemonHandle, events: readonly PacketEvent[]): void | Promise<void>;
  /** Extension: the daemon found an attachment's kernel objects tampered with (and whether it restored them). */
  onTamperReport?(daemon: DaemonHandle, report: TamperReport): void | Promise<void>;
  onDaemonDisconnected?(daemon: DaemonHandle, reason: string): void | Promise<void>;
}

export interface ControlPlaneServerOptions {
  readonly hooks: ControlPlaneHooks;
  /** Any pino-compatible logger; default: warnings and errors as JSON lines on stderr. */
  readonly logger?: SdkLogger;
  /** How long `daemon.send()` waits for a CommandResult (default 10 s). */
  readonly commandTimeoutMs?: number;
  /** Checks the `authorization` metadata of each call (e.g. "Bearer <token>"); false → UNAUTHENTICATED. */
  readonly authenticate?: (authorization: string | undefined) => boolean;
  readonly credentials?: grpc.ServerCredentials;
  /**
   * Ask daemons for Netfence's strict validation (SyncAck.strict, default true): a command with an
   * UNSPECIFIED mode or one bad entry is rejected as a whole (`applied: false` with the reason)
   * instead of being applied without it. A Go-original daemon ignores the field.
   */
  readonly strict?: boolean;
  /**
   * Ask daemons to forward their packet events (SyncAck.packet_events): blocked, audited ("would
   * block") and allowed-flow events, in PacketEventBatch, to `onPacketEvents`. Default: true when
   * that hook is set. A Go-original daemon ignores the field.
   */
  readonly packetEvents?: boolean;
}

/**
 * A netfence.v1 ControlPlane server: one Connect stream per daemon, SyncAck on SyncRequest,
 * SubscribedAck from `onSubscribed`, typed DaemonHandles for pushing commands with awaitable results.
 */
export class ControlPlaneServer {
  private readonly server = new grpc.Server({
    "grpc.max_concurrent_streams": 100_000,
    // SyncRequests of large daemons and packet-event batches can exceed the 4 MiB default.
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
  });
  private readonly log: SdkLogger;
  private readonly byDaemon = new Map<string, DaemonHandle>();
  private readonly byAttachment = new Map<string, DaemonHandle>();
  private readonly commandTimeoutMs: number;

  constructor(private readonly opts: ControlPlaneServerOptions) {
    this.log = (opts.logger ?? stderrLogger()).child({ component: "control-plane-server" });
    this.commandTimeoutMs = opts.commandTimeoutMs ?? 10_000;
    this.server.addService(serviceDefinition(ControlPlane), {
      Connect: (stream: CommandStream) => this.onConnect(stream),
      QueryDns: (call: grpc.ServerUnaryCall<DnsQueryRequest, DnsQueryResponse>, cb: grpc.sendUnaryData<DnsQueryResponse>) =>
        void this.onQueryDns(call, cb),
    });
  }

  /** Binds "host:port" (port 0 = any) and resolves with the bound port. */
  listen(address: string): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.server.bindAsync(address, this.opts.credentials ?? grpc.ServerCredentials.createInsecure(), (err, port) => {
        if (err) reject(err);
        else resolve(port);
      });
    });
  }

  /** Stops accepting, ends every stream (daemons stay fail-static and reconnect elsewhere/later). */
  async close(graceMs = 1000): Promise<void> {
    for (const d of this.byDaemon.values()) d.disconnect();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** Connected daemons (one handle per daemon id, the most recent stream). */
  daemons(): DaemonHandle[] {
    return [...this.byDaemon.values()];
  }

  daemon(daemonId: string): DaemonHandle | undefined {
    return this.byDaemon.get(daemonId);
  }

  /** The connected daemon that owns an attachment. */
  daemonOf(attachmentId: string): DaemonHandle | undefined {
    return this.byAttachment.get(attachmentId);
  }

  private authorized(metadata: grpc.Metadata): boolean {
    if (!this.opts.authenticate) return true;
    const value = metadata.get("authorization")[0];
    return this.opts.authenticate(typeof value === "string" ? value : undefined);
  }

  private onConnect(stream: CommandStream): void {
    if (!this.authorized(stream.metadata)) {
      this.log.warn({ peer: stream.getPeer() }, "rejected daemon: bad or missing bearer token");
      stream.emit("error", { code: grpc.status.UNAUTHENTICATED, details: "missing or invalid bearer token" });
      return;
    }
    let handle: DaemonHandle | null = null;
    let chain: Promise<void> = Promise.resolve();
    const run = (what: string, fn: () => void | Promise<void>): void => {
      chain = chain.then(fn).catch((err: unknown) => {
        this.log.error({ daemonId: handle?.daemonId, err: err instanceof Error ? err.message : String(err) }, `${what} hook failed`);
      });
    };
    let closed = false;
    const onClosed = (reason: string): void => {
      if (closed) return;
      closed = true;
      if (!handle) return;
      const h = handle;
      h.close(reason);
      if (this.byDaemon.get(h.daemonId) === h) this.byDaemon.delete(h.daemonId);
      for (const id of h.attachments.keys()) if (this.byAttachment.get(id) === h) this.byAttachment.delete(id);
      this.log.info({ daemonId: h.daemonId, reason }, "daemon disconnected");
      const hook = this.opts.hooks.onDaemonDisconnected;
      if (hook) run("onDaemonDisconnected", () => hook.call(this.opts.hooks, h, reason));
    };
    stream.on("end", () => {
      onClosed("stream ended");
      stream.end();
    });
    stream.on("error", (err: Error) => onClosed(err.message));
    stream.on("cancelled", () => onClosed("cancelled"));

    stream.on("data", (event: DaemonEvent) => {
      const e = event.event;
      if (e.case === "sync") {
        const previous = handle;
        const next = new DaemonHandle(daemonFromWire(e.value), stream, this.commandTimeoutMs);
        for (const a of e.value.attachments) next.attachments.set(a.id, attachmentFromWire(a));
        handle = next;
        if (previous && previous !== next) previous.close("resynced on the same stream");
        const old = this.byDaemon.get(next.daemonId);
        if (old && old !== next && old !== previous) {
          // The daemon reconnected while its old stream lingers: the new one is authoritative.
          old.close("replaced by a new stream");
          old.disconnect();
        }
        this.byDaemon.set(next.daemonId, next);
        for (const id of next.attachments.keys()) this.byAttachment.set(id, next);
        this.log.info({ daemonId: next.daemonId, hostname: next.info.hostname, attachments: next.attachments.size }, "daemon synced");
        next.write(create(ControlCommandSchema, { command: { case: "syncAck", value: { strict: this.opts.strict ?? true, packetEvents: this.opts.packetEvents ?? this.opts.hooks.onPacketEvents !== undefined } } }));
        const hook = this.opts.hooks.onDaemonSynced;
        if (hook) run("onDaemonSynced", () => hook.call(this.opts.hooks, next));
        return;
      }
      const h = handle;
      if (!h) {
        this.log.warn({ event: e.case, peer: stream.getPeer() }, "event before SyncRequest ignored");
        return;
      }
      switch (e.case) {
        case "commandResult":
          // Outside the hook chain: hooks may be awaiting exactly this result.
          h.settle({
            commandId: e.value.commandId,
            attachmentId: e.value.attachmentId,
            applied: e.value.applied,
            error: e.value.applied ? null : e.value.error,
            skipped: [...e.value.skipped],
            ...(e.value.policyVersion === "" ? {} : { policyVersion: e.value.policyVersion }),
          });
          return;
        case "subscribed": {
          const info = attachmentFromWire(e.value);
          h.attachments.set(info.id, info);
          this.byAttachment.set(info.id, h);
          run("onSubscribed", () => this.subscribe(h, info));
          return;
        }
        case "unsubscribed": {
          const { id, error } = e.value;
          const reason = reasonFromWire(e.value.reason);
          h.attachments.delete(id);
          if (this.byAttachment.get(id) === h) this.byAttachment.delete(id);
          const hook = this.opts.hooks.onUnsubscribed;
          if (hook) run("onUnsubscribed", () => hook.call(this.opts.hooks, h, id, reason, error));
          return;
        }
        case "heartbeat": {
          const hook = this.opts.hooks.onHeartbeat;
          const stats = e.value.stats.map(statsFromWire);
          if (hook) run("onHeartbeat", () => hook.call(this.opts.hooks, h, stats));
          return;
        }
        case "packetEvents": {
          const hook = this.opts.hooks.onPacketEvents;
          const events = e.value.events;
          if (hook) run("onPacketEvents", () => hook.call(this.opts.hooks, h, events));
          return;
        }
        case "tamperReport": {
          const hook = this.opts.hooks.onTamperReport;
          const report = e.value;
          if (hook) run("onTamperReport", () => hook.call(this.opts.hooks, h, report));
          return;
        }
        default:
          this.log.debug({ daemonId: h.daemonId }, "unknown daemon event ignored");
      }
    });
  }

  private async subscribe(h: DaemonHandle, info: AttachmentInfo): Promise<void> {
    const policy = await this.opts.hooks.onSubscribed(h, info);
    const ack = policyToSubscribedAck(policy);
    // The ack carries a command_id: a Netfence daemon confirms it, a Go-original daemon ignores the field.
    h.sendWithResult(info.id, "subscribed-ack", (commandId) =>
      create(ControlCommandSchema, { id: info.id, commandId, command: { case: "subscribedAck", value: ack } }),
    ).then(
      (outcome) => {
        const hook = this.opts.hooks.onSubscribedResult;
        if (hook) void Promise.resolve(hook.call(this.opts.hooks, h, info.id, outcome)).catch((err: unknown) =>
          this.log.error({ daemonId: h.daemonId, attachmentId: info.id, err: err instanceof Error ? err.message : String(err) }, "onSubscribedResult hook failed"));
        if (!outcome.applied) {
          this.log.warn({ daemonId: h.daemonId, attachmentId: info.id, err: outcome.error }, "daemon rejected the initial policy");
          h.attachments.delete(info.id);
        }
      },
      (err: unknown) => this.log.debug({ daemonId: h.daemonId, attachmentId: info.id, err: String(err) }, "SubscribedAck not confirmed"),
    );
  }

  private async onQueryDns(call: grpc.ServerUnaryCall<DnsQueryRequest, DnsQueryResponse>, cb: grpc.sendUnaryData<DnsQueryResponse>): Promise<void> {
    if (!this.authorized(call.metadata)) {
      cb({ code: grpc.status.UNAUTHENTICATED, details: "missing or invalid bearer token" });
      return;
    }
    const hook = this.opts.hooks.onQueryDns;
    if (!hook) {
      cb({ code: grpc.status.UNIMPLEMENTED, details: "this control plane does not proxy DNS" });
      return;
    }
    const { id, domain, queryType } = call.request;
    try {
      // Daemons send the question as asked ("svc.example." from this one and the Go original);
      // hooks get it in the canonical form their rules use, and as asked in `questionName`.
      const query = { attachmentId: id, domain: canonicalQueryName(domain), questionName: domain, queryType };
      const d = await hook.call(this.opts.hooks, query, this.byAttachment.get(id));
      cb(null, create(DnsQueryResponseSchema, {
        allow: d.allow,
        addToFilter: d.addToFilter ?? false,
        ips: [...(d.ips ?? [])],
        ttlSeconds: d.ttlSeconds ?? 0,
      }));
    } catch (err) {
      this.log.error({ attachmentId: id, domain, err: err instanceof Error ? err.message : String(err) }, "onQueryDns failed");
      cb({ code: grpc.status.INTERNAL, details: "onQueryDns failed" });
    }
  }
}
