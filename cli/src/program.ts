import { Command, CommanderError } from "commander";
import { netfenceVersion } from "@netfence/daemon/version";
import { DEFAULT_SOCKET, EXIT } from "./output.js";
import { startCommand } from "./commands/start.js";
import { attachCommand } from "./commands/attach.js";
import { detachCommand } from "./commands/detach.js";
import { listCommand } from "./commands/list.js";
import { statusCommand } from "./commands/status.js";
import { eventsCommand } from "./commands/events.js";
import { adoptCommand } from "./commands/adopt.js";
import { installUnitCommand } from "./commands/install-unit.js";
import { explainCommand } from "./commands/explain.js";
import { rulesCommand } from "./commands/rules.js";
import { historyCommand } from "./commands/history.js";
import { auditCommand } from "./commands/audit.js";
import { applyCommand } from "./commands/apply.js";
import { flushCommand } from "./commands/flush.js";

/** `netfenced: the daemon (`start`) and a thin client of its DaemonService socket. */
export function buildProgram(): Command {
  const program = new Command("netfenced")
    .description("per-host eBPF egress firewall for workloads behind interfaces and cgroups")
    .version(netfenceVersion(), "-v, --version")
    .option("-s, --socket <path>", "DaemonService unix socket", process.env.NETFENCE_SOCKET ?? DEFAULT_SOCKET)
    .showHelpAfterError("(run `netfenced --help` for usage)")
    .exitOverride();
  for (const cmd of [startCommand(), attachCommand(), detachCommand(), listCommand(), statusCommand(), eventsCommand(), adoptCommand(), installUnitCommand(), explainCommand(), rulesCommand(), historyCommand(), auditCommand(), applyCommand(), flushCommand()]) {
    program.addCommand(cmd.exitOverride());
  }
  return program;
}

export async function main(argv: readonly string[]): Promise<void> {
  try {
    await buildProgram().parseAsync([...argv]);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed the message (or the help/version text).
      process.exitCode = err.exitCode === 0 || err.code === "commander.helpDisplayed" || err.code === "commander.version" ? EXIT.ok : EXIT.usage;
      return;
    }
    process.stderr.write(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = EXIT.failed;
  }
}

