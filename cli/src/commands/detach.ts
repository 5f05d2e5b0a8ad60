import path from "node:path";
import { Command } from "commander";
import { usageError, withClient } from "../output.js";

export function detachCommand(): Command {
  return new Command("detach")
    .description("detach a filter and remove its pins")
    .option("--id <id>", "attachment id (from attach or list)")
    .option("--orphan <id>", "remove an orphaned filter (pinned, unknown to the daemon's state; see `netfenced status`): its id or pin directory")
    .action(async (opts: { id?: string; orphan?: string }, cmd: Command) => {
      if ((opts.id === undefined) === (opts.orphan === undefined)) {
        usageError("detach needs exactly one of --id ID or --orphan ID");
        return;
      }
      await withClient(cmd, async (client) => {
        if (opts.orphan !== undefined) {
          // A pin directory (/sys/fs/bpf/netfence/<id>) names the orphan by its last component.
          const id = path.basename(opts.orphan.replace(/\/+$/, ""));
          await client.detachOrphan(id);
          process.stdout.write(`Detached orphan ${id}\n`);
          return;
        }
        await client.detach(opts.id!);
        process.stdout.write(`Detached ${opts.id}\n`);
      });
    });
}
