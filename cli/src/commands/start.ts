import { Command } from "commander";

export function startCommand(): Command {
  return new Command("start")
    .description("run the daemon in the foreground")
    .option("-c, --config <file>", "YAML config file (keys also settable as NETFENCE_<KEY>)")
    .action(async (opts: { config?: string }, cmd: Command) => {
      // --socket given explicitly on the command line overrides the config's socket.
      const socket = cmd.getOptionValueSourceWithGlobals("socket") === "cli" ? cmd.optsWithGlobals<{ socket?: string }>().socket : null;
      // Loaded on demand: client commands should not pay for the whole daemon at start-up.
      const { runDaemon } = await import("../../../daemon/src/main.js");
      process.exitCode = await runDaemon({ configFile: opts.config ?? null, socket });
    });
}
