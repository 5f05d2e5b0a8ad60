import type pino from "pino";
import type { ControlCommand } from "@netfence/proto/control";
import { isNetfenceError } from "@netfence/proto/errors";
import type { AttachmentPolicy, PolicyCommand } from "../policy/policy.js";
import type { ControlPlaneHost } from "./control-plane-host.js";
import { KeyedSerialQueue } from "./keyed-serial-queue.js";

/** What a command is reported as in metrics (the command's kind, or the ack / an invalid one). */
export type CommandKind = PolicyCommand["kind"] | "subscribed-ack" | "invalid";

export type CommandOutcomeHook = (kind: CommandKind, applied: boolean, latencyMs: number) => void;

/**
 * Runs parsed commands on the host: one at a time per attachment (in arrival order), each
 * reported once (outcome hook, log, CommandResult through `respond`).
 */
export class CommandRunner {
  private readonly queue = new KeyedSerialQueue();

  constructor(
    private readonly host: ControlPlaneHost,
    private readonly log: pino.Logger,
    private readonly onOutcome?: CommandOutcomeHook,
    /** The control plane's address, recorded with every command in the audit trail. */
    private readonly address = "",
  ) {}

  /** Applies `command` after the ones before it for the same attachment. */
  run(attachmentId: string, command: PolicyCommand, commandId: string | null, respond: (error: string | null) => void, skipped: readonly string[] = []): void {
    this.queue.run(attachmentId, () => this.applyNow(attachmentId, command, commandId, respond, skipped));
  }

  /**
   * A command that needs an asynchronous step before it can be parsed (user and group names to
   * resolve, command-principals.ts): `prepare` runs in the attachment's queue, where the command
   * arrived, so it still applies after the commands before it and before the ones after it.
   * `queueKey` is the command's raw attachment id; a command `prepare` rejects goes to `onInvalid`.
   */
  runResolving(
    queueKey: string,
    prepare: () => Promise<{ attachmentId: string; command: PolicyCommand; skipped: readonly string[] }>,
    commandId: string | null,
    respond: (error: string | null, skipped: readonly string[]) => void,
    onInvalid: (err: unknown) => void,
  ): void {
    this.queue.run(queueKey, async () => {
      let parsed: Awaited<ReturnType<typeof prepare>>;
      try {
        parsed = await prepare();
      } catch (err) {
        onInvalid(err);
        return;
      }
      await this.applyNow(parsed.attachmentId, parsed.command, commandId, (error) => respond(error, error === null ? parsed.skipped : []), parsed.skipped);
    });
  }

  private async applyNow(attachmentId: string, command: PolicyCommand, commandId: string | null, respond: (error: string | null) => void, skipped: readonly string[]): Promise<void> {
    {
      const started = performance.now();
      try {
        await this.host.applyCommand(attachmentId, command, { source: "control-plane", commandId, controlPlane: this.address, skipped });
        this.log.debug({ attachmentId, commandId, command: command.kind }, "applied command");
        this.onOutcome?.(command.kind, true, performance.now() - started);
        respond(null);
      } catch (err) {
        const message = errorMessage(err);
        this.log.warn({ attachmentId, commandId, command: command.kind, err: message }, "command not applied");
        this.onOutcome?.(command.kind, false, performance.now() - started);
        respond(message);
      }
    }
  }

  /** A SubscribedAck for a live attachment (timeout 0, adopted orphan): applied as a full replacement, in order with its commands. */
  runLateAck(id: string, commandId: string | null, policy: AttachmentPolicy, respond: (error: string | null) => void, skipped: readonly string[] = []): void {
    this.queue.run(id, async () => {
      const started = performance.now();
      try {
        await this.host.applyCommand(
          id,
          {
            kind: "bulk-update", mode: policy.mode, audit: policy.audit, allowCidrs: policy.allowCidrs, denyCidrs: policy.denyCidrs, dns: policy.dns,
            established: policy.established ?? "sever",
          },
          { source: "control-plane", commandId, controlPlane: this.address, skipped, action: "subscribed-ack" },
        );
        this.log.info({ attachmentId: id, commandId }, "SubscribedAck applied to the live attachment");
        this.onOutcome?.("subscribed-ack", true, performance.now() - started);
        respond(null);
      } catch (err) {
        const message = errorMessage(err);
        this.log.warn({ attachmentId: id, commandId, err: message }, "SubscribedAck not applied");
        this.onOutcome?.("subscribed-ack", false, performance.now() - started);
        respond(message);
      }
    });
  }
}

export function kindOf(cmd: ControlCommand): CommandKind {
  switch (cmd.command.case) {
    case "setMode": return "set-mode";
    case "allowCidr": return "allow-cidr";
    case "denyCidr": return "deny-cidr";
    case "removeCidr": return "remove-cidr";
    case "bulkUpdate": return "bulk-update";
    case "setDnsMode": return "set-dns-mode";
    case "allowDomain": return "allow-domain";
    case "denyDomain": return "deny-domain";
    case "removeDomain": return "remove-domain";
    default: return "invalid";
  }
}

export function errorMessage(err: unknown): string {
  if (isNetfenceError(err)) return err.message;
  return err instanceof Error ? err.message : String(err);
}

/** "5s" for whole seconds, else "1500ms" (timeouts in messages). */
export const formatSeconds = (ms: number): string => (ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);
