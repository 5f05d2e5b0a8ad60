import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import type pino from "pino";
import { ControlPlane, DaemonEventSchema, type ControlCommand, type DaemonEvent, type PacketEvent, type TamperReport } from "@netfence/proto/control";
import { NetfenceError, isNetfenceError } from "@netfence/proto/errors";
import { methodDefinition } from "@netfence/proto/grpc";
import type { AttachmentView } from "../attachments/attachment-view.js";
import type { PolicySource } from "../attachments/policy-source.js";
import type { DnsProxy, DnsProxyAnswer } from "../dns/dns-proxy.js";
import { DISABLED_POLICY, type AttachmentPolicy } from "../policy/policy.js";
import type { ControlPlaneHost } from "./control-plane-host.js";
import { AddressList } from "./address-list.js";
import { Backoff } from "./backoff.js";
import { waitConnected } from "./wait-connected.js";
import { CHANNEL_OPTIONS, callMetadata, channelCredentials, type ControlPlaneTlsOptions } from "./channel-credentials.js";
import { CommandRunner, errorMessage, formatSeconds, kindOf, type CommandKind } from "./command-runner.js";
import { PendingSubscriptions } from "./pending-subscriptions.js";
import { queryDnsCall } from "./query-dns-call.js";
import { parseSubscribedAck } from "./parse-command.js";
import { deferForPrincipals } from "./command-principals.js";
import { intakeCommand } from "./command-intake.js";
import type { PrincipalLookup } from "@netfence/proto/parse";
import { acceptedAck, rejectedCommand } from "./command-history.js";
import { HeartbeatTimer } from "./heartbeat-timer.js";
import { commandResultEvent, subscribedEvent, syncRequestEvent, unsubscribedEvent } from "./wire-events.js";

export type ControlPlaneState = "disconnected" | "connecting" | "connected";

/** Command kinds as reported to metrics; "invalid" = no (known) command in the oneof. */
export type { CommandKind } from "./command-runner.js";

export type { ControlPlaneTlsOptions } from "./channel-credentials.js";

export interface ControlPlaneClientOptions {
  /** "host:port" of the control plane, or several comma-separated (failover: address-list.ts). */
  readonly url: string;
  readonly tls?: ControlPlaneTlsOptions | null;
  /** Sent as `authorization: Bearer <token>` on every call. */
  readonly token?: string | null;
  readonly daemonId: string;
  readonly hostname: string;
  readonly metadata: Record<string, string>;
  readonly heartbeatIntervalMs: number;
  readonly subscribeAckTimeoutMs: number;
  readonly host: ControlPlaneHost;
  readonly logger: pino.Logger;
  /** Deadline of one ControlPlane.QueryDns call (default 2 s). */
  readonly queryDnsTimeoutMs?: number;
  /** How long one connection attempt may wait for the transport (default 5 s). */
  readonly connectTimeoutMs?: number;
  readonly backoff?: { readonly baseMs: number; readonly capMs: number; readonly resetAfterMs?: number };
  /** Observability hook (metrics): every policy command's outcome and apply latency. */
  readonly onCommandOutcome?: (kind: CommandKind, applied: boolean, latencyMs: number) => void;
  /** Observability hook (metrics): every state change. */
  readonly onStateChange?: (state: ControlPlaneState) => void;
  /**
   * With subscribeAckTimeoutMs 0 (the Go original's "do not wait"): the policy an attachment
   * starts with (the config's default_policy) until its SubscribedAck arrives. Default: disabled.
   */
  readonly initialPolicy?: AttachmentPolicy;
}

const CONNECT_METHOD = methodDefinition(ControlPlane.method.connect);
/** Packet-event batches are dropped (counted by the forwarder) while gRPC holds more than this unsent. */
export const PUBLISH_BACKLOG_BYTES = 4 * 1024 * 1024;

/**
 * The daemon's side of `ControlPlane.Connect`: one long-lived bidirectional stream per daemon.
 *
 * - Every (re)connect sends SyncRequest with all current attachments, then re-sends Subscribed for
 *   attachments still waiting for their SubscribedAck.
 * - Commands are parsed at the edge (parse-command.ts) and handed to the host one at a time per
 *   attachment, in arrival order. Invalid commands change nothing and never break the stream.
 * - A command carrying the extension `command_id` is answered with a CommandResult event; one
 *   without it is never answered (a control plane written for the Go original never sees one).
 * - Fail-static: a broken stream only changes `state()`; enforcement stays as last applied while
 *   the client reconnects with exponential backoff and full jitter.
 * - Unsubscribed while disconnected is dropped, not queued: the SyncRequest sent on reconnect is
 *   authoritative (an attachment missing from it is gone), and a queued Unsubscribed would arrive
 *   after that SyncRequest and describe a state the control plane already knows.
 * - Go-original semantics unless the control plane opts into strict ones (SyncAck.strict): see
 *   parse-command.ts. `subscribe_ack_timeout: 0` means "do not wait": an attach returns at once
 *   on `initialPolicy`, and the SubscribedAck applies whenever it comes (as a full replacement).
 */
export class ControlPlaneClient implements PolicySource, DnsProxy {
  private readonly log: pino.Logger;
  private readonly credentials: grpc.ChannelCredentials;
  private readonly backoff: Backoff;
  private readonly addresses: AddressList;
  private currentState: ControlPlaneState = "disconnected";
  private started = false;
  private stopped = false;
  private client: grpc.Client | null = null;
  private call: grpc.ClientDuplexStream<DaemonEvent, ControlCommand> | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private readonly heartbeat: HeartbeatTimer;
  private readonly pending: PendingSubscriptions;
  /** Live attachments whose SubscribedAck may still come and will then apply (timeout 0, adopted orphans). */
  private readonly awaitingAck = new Map<string, AttachmentView>();
  /** The current stream asked for strict semantics (SyncAck.strict). */
  private strict = false;
  /** The current stream asked for packet events (SyncAck.packet_events). */
  private packetEvents = false;
  private readonly commands: CommandRunner;
  readonly historySource = "control-plane";

  constructor(private readonly opts: ControlPlaneClientOptions) {
    this.addresses = new AddressList(opts.url);
    this.log = opts.logger.child({ component: "control-plane", controlPlane: opts.url });
    this.credentials = channelCredentials(opts.tls ?? null);
    this.backoff = new Backoff(opts.backoff ?? { baseMs: 200, capMs: 30_000 });
    this.pending = new PendingSubscriptions(opts.subscribeAckTimeoutMs, (view) => this.ackTimedOut(view));
    this.commands = new CommandRunner(opts.host, this.log, opts.onCommandOutcome, opts.url);
    this.heartbeat = new HeartbeatTimer(opts.heartbeatIntervalMs, () => opts.host.stats(), this.log, opts.host.ruleHits?.bind(opts.host));
  }

  state(): ControlPlaneState {
    return this.currentState;
  }

  address(): string {
    return this.addresses.current();
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.connect();
  }

  /** Ends the stream, stops reconnecting and fails pending subscriptions with UNAVAILABLE. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.heartbeat.stop();
    this.pending.rejectAll((id) => new NetfenceError("UNAVAILABLE", "control-plane client stopped", { details: { attachmentId: id } }));
    const call = this.call;
    this.call = null;
    if (call) {
      call.end();
      call.cancel();
    }
    this.client?.close();
    this.client = null;
    this.setState("disconnected");
  }

  // ---------------------------------------------------------------- PolicySource

  subscribe(view: AttachmentView): Promise<AttachmentPolicy> {
    if (this.stopped) return Promise.reject(new NetfenceError("UNAVAILABLE", "control-plane client stopped"));
    if (this.opts.subscribeAckTimeoutMs === 0) {
      // Do not wait (the Go original's subscribe_ack_timeout: 0): the ack applies when it comes.
      this.announce(view);
      return Promise.resolve(this.opts.initialPolicy ?? DISABLED_POLICY);
    }
    const policy = this.pending.wait(view);
    // Not connected: the Subscribed goes out right after the next SyncRequest, within the same deadline.
    if (this.pending.has(view.id) && this.send(subscribedEvent(view))) {
      this.log.info({ attachmentId: view.id }, "subscribed; waiting for SubscribedAck");
    } else {
      this.log.info({ attachmentId: view.id, state: this.currentState }, "subscribe waits for the control plane");
    }
    return policy;
  }

  /** An orphan re-registered from its pins: the control plane hears Subscribed; its ack applies when it comes. */
  adopted(view: AttachmentView): void {
    if (!this.stopped) this.announce(view);
  }

  private announce(view: AttachmentView): void {
    this.awaitingAck.set(view.id, view);
    if (this.send(subscribedEvent(view))) this.log.info({ attachmentId: view.id }, "subscribed; its SubscribedAck applies when it comes");
    else this.log.info({ attachmentId: view.id, state: this.currentState }, "Subscribed goes out after the next SyncRequest");
  }

  unsubscribed(id: string, reason: "removed" | "detached" | "error", error?: string): void {
    this.awaitingAck.delete(id);
    this.pending.reject(id, new NetfenceError("ABORTED", `attachment ${id} went away while waiting for its SubscribedAck`));
    if (!this.send(unsubscribedEvent(id, reason, error))) {
      this.log.info({ attachmentId: id, reason }, "unsubscribed while disconnected; the next SyncRequest reflects it");
    }
  }

  private ackTimedOut(view: AttachmentView): NetfenceError {
    const timeoutMs = this.opts.subscribeAckTimeoutMs;
    const message = this.currentState === "connected"
      ? `no SubscribedAck within ${formatSeconds(timeoutMs)}`
      : `no SubscribedAck within ${formatSeconds(timeoutMs)} (control plane ${this.currentState} at ${this.opts.url})`;
    this.log.warn({ attachmentId: view.id, timeoutMs, state: this.currentState }, "subscribe timed out");
    return new NetfenceError("DEADLINE_EXCEEDED", message, { details: { attachmentId: view.id, timeoutMs } });
  }

  // ---------------------------------------------------------------- DnsProxy

  queryDns(attachmentId: string, domain: string, queryType: string): Promise<DnsProxyAnswer> {
    const client = this.client;
    if (client === null || this.call === null) {
      return Promise.reject(new NetfenceError("UNAVAILABLE", `control plane not connected (${this.currentState})`, { details: { attachmentId } }));
    }
    return queryDnsCall(client, callMetadata(this.opts.token), { attachmentId, domain, queryType, timeoutMs: this.opts.queryDnsTimeoutMs ?? 2000 });
  }

  // ---------------------------------------------------------------- extension: packet events

  /** The current stream's SyncAck asked for packet events (a Go-original control plane never does). */
  wantsPacketEvents(): boolean {
    return this.packetEvents && this.call !== null;
  }

  /**
   * Forwards packet events as one PacketEventBatch. False when not connected, not asked for, or
   * when the stream is slow (more than PUBLISH_BACKLOG_BYTES not yet taken by gRPC): dropped.
   */
  publishEvents(events: readonly PacketEvent[]): boolean {
    if (events.length === 0) return true;
    if (!this.wantsPacketEvents() || this.call === null || this.call.writableLength > PUBLISH_BACKLOG_BYTES) return false;
    return this.send(create(DaemonEventSchema, { event: { case: "packetEvents", value: { events: [...events] } } }));
  }
  /** Extension (lane M): one TamperReport (DaemonEvent 102). False when not connected. */
  publishTamper(report: TamperReport): boolean {
    return this.send(create(DaemonEventSchema, { event: { case: "tamperReport", value: report } }));
  }

  // ---------------------------------------------------------------- connection lifecycle

  private setState(state: ControlPlaneState): void {
    if (this.currentState === state) return;
    this.currentState = state;
    this.log.info({ state }, `control plane ${state}`);
    this.opts.onStateChange?.(state);
  }

  private connect(): void {
    if (this.stopped) return;
    this.reconnectTimer = null;
    this.setState("connecting");
    const client = new grpc.Client(this.address(), this.credentials, CHANNEL_OPTIONS);
    this.client = client;
    waitConnected(client, this.opts.connectTimeoutMs ?? 5000, (err) => {
      if (this.stopped || this.client !== client) return;
      if (err) {
        this.log.warn({ err: err.message, attempt: this.backoff.attempts() }, "control plane unreachable");
        this.disconnected(client);
        return;
      }
      this.openStream(client);
    });
  }

  private openStream(client: grpc.Client): void {
    const call = client.makeBidiStreamRequest(
      CONNECT_METHOD.path,
      CONNECT_METHOD.requestSerialize,
      CONNECT_METHOD.responseDeserialize,
      callMetadata(this.opts.token),
      {},
    );
    this.call = call;
    this.backoff.opened();
    this.strict = false; // until this stream's SyncAck says otherwise
    this.packetEvents = false;
    call.on("data", (cmd: ControlCommand) => this.onCommand(call, cmd));
    call.on("error", (err: grpc.ServiceError) => this.onStreamEnd(call, client, err));
    call.on("end", () => this.onStreamEnd(call, client, null));

    // "connected" once the control plane answers (headers, SyncAck or any command): a server that
    // rejects the stream (bad token, wrong service) must not look connected in the meantime.
    call.on("metadata", () => {
      if (this.call === call) this.setState("connected");
    });
    const attachments = this.opts.host.attachments();
    call.write(syncRequestEvent(this.opts.daemonId, this.opts.hostname, this.opts.metadata, attachments));
    this.log.info({ attachments: attachments.length, pendingSubscriptions: this.pending.size }, "sent SyncRequest");
    for (const view of this.pending.views()) call.write(subscribedEvent(view));
    for (const view of this.awaitingAck.values()) call.write(subscribedEvent(view));
    this.heartbeat.start((e) => this.send(e, call));
  }

  private onStreamEnd(call: grpc.ClientDuplexStream<DaemonEvent, ControlCommand>, client: grpc.Client, err: grpc.ServiceError | null): void {
    if (this.call !== call) return;
    this.call = null;
    if (err) this.log.warn({ code: err.code, err: err.details }, "control-plane stream failed; enforcing last policy (fail-static)");
    else this.log.warn("control plane ended the stream; enforcing last policy (fail-static)");
    call.end();
    this.disconnected(client);
  }

  private disconnected(client: grpc.Client): void {
    this.heartbeat.stop();
    client.close();
    if (this.client === client) this.client = null;
    this.setState("disconnected");
    if (this.stopped) return;
    this.addresses.advance(); // failover: the next attempt goes to the next address
    const delay = this.backoff.next();
    this.log.info({ delayMs: delay, attempt: this.backoff.attempts(), next: this.address() }, "reconnecting to control plane");
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private send(event: DaemonEvent, call = this.call): boolean {
    if (call === null || this.call !== call) return false;
    call.write(event);
    return true;
  }

  // ---------------------------------------------------------------- commands

  private onCommand(call: grpc.ClientDuplexStream<DaemonEvent, ControlCommand>, cmd: ControlCommand): void {
    // The control plane is demonstrably serving: the next outage starts from the base delay again.
    this.backoff.reset();
    if (this.call === call) this.setState("connected");
    const commandId = cmd.commandId === "" ? null : cmd.commandId;
    const respond = (error: string | null, skipped: readonly string[] = []): void => {
      if (commandId !== null) this.send(commandResultEvent(commandId, cmd, error, skipped), call);
    };
    switch (cmd.command.case) {
      case "syncAck":
        if (this.call === call) {
          this.strict = cmd.command.value.strict;
          this.packetEvents = cmd.command.value.packetEvents;
        }
        this.log.debug({ commandId, strict: cmd.command.value.strict, packetEvents: cmd.command.value.packetEvents }, "SyncAck");
        respond(null);
        return;
      case "subscribedAck":
        this.onSubscribedAck(cmd, commandId, respond);
        return;
      default:
        break;
    }
    intakeCommand(cmd, commandId, respond, {
      strict: this.strict,
      log: this.log,
      runner: this.commands,
      onInvalid: (err) => {
        const message = errorMessage(err);
        this.opts.onCommandOutcome?.(kindOf(cmd), false, 0);
        this.opts.host.recordHistory?.(rejectedCommand(this.opts.url, cmd.id, kindOf(cmd), commandId, message)); // audit trail
        respond(message);
      },
    });
  }

  private onSubscribedAck(
    cmd: ControlCommand,
    commandId: string | null,
    respond: (error: string | null, skipped?: readonly string[]) => void,
    principals?: PrincipalLookup,
  ): void {
    if (cmd.command.case !== "subscribedAck") return;
    const ack = cmd.command.value;
    // User/group names (issue 15): looked up first, then the ack is taken as usual (its pending
    // subscription is checked again then: it may have timed out meanwhile).
    if (principals === undefined && deferForPrincipals(cmd, (lookup) => this.onSubscribedAck(cmd, commandId, respond, lookup))) return;
    const late = !this.pending.has(cmd.id) && this.awaitingAck.has(cmd.id);
    if (!this.pending.has(cmd.id) && !late) {
      const message = `no pending subscription for attachment "${cmd.id}" (unknown, or its SubscribedAck already timed out)`;
      this.log.warn({ attachmentId: cmd.id, commandId }, message);
      this.opts.host.recordHistory?.(rejectedCommand(this.opts.url, cmd.id, "subscribed-ack", commandId, message)); // audit trail
      respond(message);
      return;
    }
    let parsed: ReturnType<typeof parseSubscribedAck>;
    try {
      parsed = parseSubscribedAck(ack, Date.now(), { strict: this.strict, ...(principals !== undefined ? { principals } : {}) });
    } catch (err) {
      const nfe = NetfenceError.from(err, "INVALID_ARGUMENT");
      const invalid = new NetfenceError(nfe.code, `invalid SubscribedAck: ${nfe.message}`, { details: nfe.details, cause: nfe });
      this.log.warn({ attachmentId: cmd.id, commandId, err: invalid.message }, late ? "invalid SubscribedAck; nothing changed" : "invalid SubscribedAck; attach fails");
      if (!late) this.pending.reject(cmd.id, invalid);
      this.opts.onCommandOutcome?.("subscribed-ack", false, 0);
      this.opts.host.recordHistory?.(rejectedCommand(this.opts.url, cmd.id, "subscribed-ack", commandId, invalid.message)); // audit trail
      respond(invalid.message);
      return;
    }
    if (parsed.skipped.length > 0) this.log.warn({ attachmentId: cmd.id, commandId, skipped: parsed.skipped }, "SubscribedAck: bad entries skipped; the rest applies");
    if (late) {
      this.awaitingAck.delete(cmd.id);
      this.commands.runLateAck(cmd.id, commandId, parsed.policy, (error) => respond(error, parsed.skipped), parsed.skipped);
      return;
    }
    this.pending.settle(cmd.id, () => parsed.policy);
    this.log.info({ attachmentId: cmd.id, commandId }, "SubscribedAck");
    this.opts.onCommandOutcome?.("subscribed-ack", true, 0);
    this.opts.host.recordHistory?.(acceptedAck(this.opts.url, cmd.id, commandId, parsed.policy, parsed.skipped));
    // "applied" here means accepted as the initial policy; if the host then fails to install it,
    // the attach is rolled back and the control plane hears Unsubscribed(ERROR).
    respond(null, parsed.skipped);
  }
}
