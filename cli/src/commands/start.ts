import { Command } from "commander";
import { importPackage } from "../import-package.js";

export function startCommand(): Command {
  return new Command("start")
    .description("run the daemon in the foreground")
    .option("-c, --config <file>", "YAML config file (keys also settable as NETFENCE_<KEY>)")
    .option("--no-restore", "do not re-create attachments whose pins are gone (after a reboot); drop them instead (config `restore`)")
    .action(async (opts: { config?: string; restore: boolean }, cmd: Command) => {
      // --socket given explicitly on the command line overrides the config's socket.
      const socket = cmd.getOptionValueSourceWithGlobals("socket") === "cli" ? cmd.optsWithGlobals<{ socket?: string }>().socket : null;
      // Loaded on demand: client commands should not pay for the whole daemon at start-up.
      const { runDaemon } = await importPackage<typeof import("@netfence/daemon/run")>("@netfence/daemon/run");
      const code = await runDaemon({ configFile: opts.config ?? null, socket, noRestore: opts.restore === false });
      // The daemon is done (stopped, or failed to start with everything released): exit now, so
      // that nothing left behind — a timer, a socket of a library — can keep the process alive.
      process.exit(code);
    });
}
