import type * as grpc from "@grpc/grpc-js";
import type { ControlCommand, DaemonEvent } from "@netfence/proto/control";
import type {
  AttachmentInfo,
  Command,
  CommandOutcome,
  DaemonInfo,
  DnsMode,
  Mode,
  PolicySpec,
} from "./policy-spec.js";
import { commandToWire } from "./to-wire.js";

export type CommandStream = grpc.ServerDuplexStream<DaemonEvent, ControlCommand>;

/** Rejection of `send()` when no CommandResult came back (timeout, or the daemon disconnected). */
export class CommandNotConfirmedError extends Error {
  override readonly name = "CommandNotConfirmedError";
  constructor(message: string, readonly commandId: string, readonly attachmentId: string) {
    super(message);
  }
}

interface PendingCommand {
  readonly attachmentId: string;
  readonly resolve: (outcome: CommandOutcome) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

let commandSeq = 0;
const COMMAND_PREFIX = `${process.pid.toString(36)}${Date.now().toString(36)}`;

function nextCommandId(): string {
  commandSeq = (commandSeq + 1) % Number.MAX_SAFE_INTEGER;
  return `${COMMAND_PREFIX}-${commandSeq.toString(36)}`;
}

/**
 * One connected daemon (one Connect stream). Created by ControlPlaneServer when the daemon's
 * SyncRequest arrives; `connected` turns false when the stream ends (a reconnecting daemon gets a
 * new handle). Commands are written in call order on the stream, so the daemon applies commands
 * for one attachment in that order.
 */
export class DaemonHandle {
  readonly info: DaemonInfo;
  /** The daemon's attachments as last reported (SyncRequest, Subscribed, Unsubscribed). */
  readonly attachments = new Map<string, AttachmentInfo>();
  private readonly pending = new Map<string, PendingCommand>();
  private open = true;
  private confirms: boolean | null = null;

  constructor(
    info: DaemonInfo,
    private readonly stream: CommandStream,
    private readonly defaultTimeoutMs: number,
  ) {
    this.info = info;
  }

  get connected(): boolean {
    return this.open;
  }

  get daemonId(): string {
    return this.info.daemonId;
  }

  /**
   * Whether this daemon answers command_id with CommandResult: true once one arrived, false after
   * a command went unanswered without any ever arriving (a Go-original daemon), null until known.
   * Use `post()` for daemons where this is false.
   */
  get confirmsCommands(): boolean | null {
    return this.confirms;
  }

  /**
   * Sends a command with a fresh command_id and resolves with the daemon's CommandResult
   * (applied or rejected with the reason). Rejects with CommandNotConfirmedError on timeout or
   * disconnect — including against a daemon that does not implement the CommandResult extension.
   */
  send(attachmentId: string, command: Command, opts: { timeoutMs?: number } = {}): Promise<CommandOutcome> {
    return this.sendWithResult(attachmentId, command.kind, (commandId) => commandToWire(attachmentId, command, commandId), opts.timeoutMs);
  }

  /** @internal Writes a command carrying a fresh command_id and waits for its CommandResult. */
  sendWithResult(attachmentId: string, label: string, build: (commandId: string) => ControlCommand, timeoutMs = this.defaultTimeoutMs): Promise<CommandOutcome> {
    if (!this.open) {
      return Promise.reject(new CommandNotConfirmedError(`daemon ${this.info.daemonId} is not connected`, "", attachmentId));
    }
    const commandId = nextCommandId();
    return new Promise<CommandOutcome>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(commandId)) {
          if (this.confirms === null) this.confirms = false;
          reject(new CommandNotConfirmedError(`no CommandResult for ${label} on ${attachmentId} within ${timeoutMs}ms`, commandId, attachmentId));
        }
      }, timeoutMs);
      this.pending.set(commandId, { attachmentId, resolve, reject, timer });
      this.stream.write(build(commandId));
    });
  }

  /** Fire and forget: no command_id, so the daemon sends no CommandResult (Go-original style). */
  post(attachmentId: string, command: Command): void {
    if (this.open) this.stream.write(commandToWire(attachmentId, command, ""));
  }

  /** `audit` absent: the attachment's audit mode stays; true/false turns audit mode on/off with the mode. */
  setMode(attachmentId: string, mode: Mode, audit?: boolean): Promise<CommandOutcome> {
    return this.send(attachmentId, audit === undefined ? { kind: "set-mode", mode } : { kind: "set-mode", mode, audit });
  }

  allowCidr(attachmentId: string, cidr: string, ttlSeconds?: number): Promise<CommandOutcome> {
    return this.send(attachmentId, { kind: "allow-cidr", cidr, ttlSeconds });
  }

  denyCidr(attachmentId: string, cidr: string, ttlSeconds?: number): Promise<CommandOutcome> {
    return this.send(attachmentId, { kind: "deny-cidr", cidr, ttlSeconds });
  }

  removeCidr(attachmentId: string, cidr: string): Promise<CommandOutcome> {
    return this.send(attachmentId, { kind: "remove-cidr", cidr });
  }

  bulkUpdate(attachmentId: string, policy: PolicySpec): Promise<CommandOutcome> {
    return this.send(attachmentId, { kind: "bulk-update", policy });
  }

  setDnsMode(attachmentId: string, mode: DnsMode): Promise<CommandOutcome> {
    return this.send(attachmentId, { kind: "set-dns-mode", mode });
  }

  allowDomain(attachmentId: string, domain: string, includeSubdomains = false): Promise<CommandOutcome> {
    return this.send(attachmentId, { kind: "allow-domain", domain, includeSubdomains });
  }

  denyDomain(attachmentId: string, domain: string, includeSubdomains = false): Promise<CommandOutcome> {
    return this.send(attachmentId, { kind: "deny-domain", domain, includeSubdomains });
  }

  removeDomain(attachmentId: string, domain: string): Promise<CommandOutcome> {
    return this.send(attachmentId, { kind: "remove-domain", domain });
  }

  /** @internal Called by the server when a CommandResult arrives. False when nobody waited for it. */
  settle(outcome: CommandOutcome): boolean {
    this.confirms = true;
    const p = this.pending.get(outcome.commandId);
    if (!p) return false;
    clearTimeout(p.timer);
    this.pending.delete(outcome.commandId);
    p.resolve(outcome);
    return true;
  }

  /** @internal Writes a raw command (SyncAck, SubscribedAck). */
  write(cmd: ControlCommand): void {
    if (this.open) this.stream.write(cmd);
  }

  /** @internal Called by the server when the stream ends. */
  close(reason: string): void {
    if (!this.open) return;
    this.open = false;
    for (const [commandId, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new CommandNotConfirmedError(`daemon ${this.info.daemonId} disconnected (${reason})`, commandId, p.attachmentId));
    }
    this.pending.clear();
  }

  /** Ends the stream from the control-plane side (the daemon will reconnect and resync). */
  disconnect(): void {
    this.stream.end();
  }
}
