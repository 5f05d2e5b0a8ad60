import { Command } from "commander";
import { withClient } from "../output.js";

export function detachCommand(): Command {
  return new Command("detach")
    .description("detach a filter and remove its pins")
    .requiredOption("--id <id>", "attachment id (from attach or list)")
    .action(async (opts: { id: string }, cmd: Command) => {
      await withClient(cmd, async (client) => {
        await client.detach(opts.id);
        process.stdout.write(`Detached ${opts.id}\n`);
      });
    });
}
