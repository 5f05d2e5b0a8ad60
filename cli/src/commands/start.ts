import { Command } from "commander";
import { runDaemon } from "../../../daemon/src/main.js";

export function startCommand(): Command {
  return new Command("start")
    .description("run the daemon in the foreground")
    .option("-c, --config <file>", "YAML config file (keys also settable as NETFENCE_<KEY>)")
    .action(async (opts: { config?: string }, cmd: Command) => {
      // --socket given explicitly on the command line overrides the config's socket.
      const socket = cmd.getOptionValueSourceWithGlobals("socket") === "cli" ? cmd.optsWithGlobals<{ socket?: string }>().socket : null;
      process.exitCode = await runDaemon({ configFile: opts.config ?? null, socket });
    });
}
