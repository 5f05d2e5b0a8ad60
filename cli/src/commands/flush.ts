import { Command } from "commander";
import { isNetfenceError } from "@netfence/proto/errors";
import { DAEMON_NOT_RUNNING } from "../daemon-client.js";
import { EXIT, fail, printJson, withClient } from "../output.js";

/**
 * `netfenced flush` (issue 15): removes every Netfence program, link and pin — all attachments
 * detached and forgotten (not re-created at the next start), the protected sets emptied, the DNS
 * port guard removed — then the daemon stops and removes its host-wide pins. Nothing of anyone
 * else is touched. It needs the running daemon: with the daemon stopped it refuses (what is pinned
 * is known for sure only to the daemon that pinned it).
 */
export function flushCommand(): Command {
  return new Command("flush")
    .description("remove every Netfence program, link and pin (all attachments forgotten), then stop the daemon")
    .requiredOption("--yes", "confirm: every workload loses its firewall")
    .option("--json", "print the result as JSON")
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      await withClient(cmd, async (client) => {
        try {
          const r = await client.flush();
          if (opts.json) {
            printJson({ detached: r.detached, removed: r.removed });
            return;
          }
          process.stdout.write(`Detached ${r.detached.length} attachment(s)${r.detached.length > 0 ? `: ${r.detached.join(", ")}` : ""}\n`);
          for (const x of r.removed) process.stdout.write(`Removed ${x}\n`);
          process.stdout.write("The daemon stops now; nothing of Netfence is left in the kernel once it has.\n");
        } catch (err) {
          if (isNetfenceError(err) && err.details.reason === DAEMON_NOT_RUNNING) {
            process.stderr.write(
              "Error: flush needs the running daemon (it removes exactly what the daemon installed). Start it " +
                "(`netfenced start --config FILE`; its start re-creates the stored attachments) and run `netfenced flush --yes` again.\n",
            );
            process.exitCode = EXIT.notRunning;
            return;
          }
          fail(err);
        }
      });
    });
}
