import type pino from "pino";
import type { ControlCommand } from "@netfence/proto/control";
import { errorMessage, type CommandRunner } from "./command-runner.js";
import { parseCommand, type ParsedCommand } from "./parse-command.js";
import { hasPrincipalNames, principalNamesOfCommand, resolvePrincipalNames } from "./command-principals.js";

/**
 * A policy command from the stream to the runner: parsed at once when it names no users or groups
 * (nearly always), else resolved through NSS and parsed inside the attachment's queue, where it
 * arrived (issue 15) — so commands still apply in arrival order. An invalid command is logged and
 * handed to `onInvalid` (counted, recorded, answered); nothing changes.
 */
export interface IntakeContext {
  readonly strict: boolean;
  readonly log: pino.Logger;
  readonly runner: CommandRunner;
  readonly onInvalid: (err: unknown) => void;
}

export function intakeCommand(cmd: ControlCommand, commandId: string | null, respond: (error: string | null, skipped?: readonly string[]) => void, ctx: IntakeContext): void {
  const reject = (err: unknown): void => {
    ctx.log.warn({ attachmentId: cmd.id, commandId, command: cmd.command.case ?? "none", err: errorMessage(err) }, "rejected invalid command");
    ctx.onInvalid(err);
  };
  const noteSkipped = (parsed: ParsedCommand): ParsedCommand => {
    if (parsed.skipped.length > 0) {
      ctx.log.warn({ attachmentId: parsed.attachmentId, commandId, command: parsed.command.kind, skipped: parsed.skipped }, "bad entries skipped; the rest applies");
    }
    return parsed;
  };
  const names = principalNamesOfCommand(cmd);
  if (hasPrincipalNames(names)) {
    const strict = ctx.strict;
    const prepare = async (): Promise<ParsedCommand> => noteSkipped(parseCommand(cmd, Date.now(), { strict, principals: await resolvePrincipalNames(names) }));
    ctx.runner.runResolving(cmd.id, prepare, commandId, respond, reject);
    return;
  }
  let parsed: ParsedCommand;
  try {
    parsed = noteSkipped(parseCommand(cmd, Date.now(), { strict: ctx.strict }));
  } catch (err) {
    reject(err);
    return;
  }
  ctx.runner.run(parsed.attachmentId, parsed.command, commandId, (error) => respond(error, error === null ? parsed.skipped : []), parsed.skipped);
}
