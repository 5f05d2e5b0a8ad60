import { readFileSync } from "node:fs";
import path from "node:path";
import { Command } from "commander";
import { printJson, usageError, withClient } from "../output.js";

/**
 * `netfenced apply -f policy.yaml [--dry-run]` (issue 15): the standalone policy file of a host
 * without a control plane. The daemon parses it (users and groups resolve on the host), validates
 * all of it (errors as file:line:col), prints the diff against what is in force and applies it as
 * a whole or not at all; a second apply of the same file says "no changes".
 * Exit: 0 applied / no changes / dry run; 2 the file is invalid or would cut management access.
 */
export function applyCommand(): Command {
  return new Command("apply")
    .description("apply a standalone policy file (hosts without a control plane): validate, show the diff, apply atomically")
    .requiredOption("-f, --file <policy.yaml>", "the policy file (docs/operator-guide.md \"Standalone policy file\")")
    .option("--dry-run", "validate and show the diff; change nothing")
    .option("--json", "print the result as JSON")
    .action(async (opts: { file: string; dryRun?: boolean; json?: boolean }, cmd: Command) => {
      let content: string;
      try {
        content = readFileSync(opts.file, "utf8");
      } catch (err) {
        usageError(`cannot read ${opts.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        return;
      }
      await withClient(cmd, async (client) => {
        const r = await client.applyPolicy(path.basename(opts.file), content, opts.dryRun === true);
        if (opts.json) {
          printJson({ changed: r.changed, applied: r.applied, changes: r.changes });
          return;
        }
        if (!r.changed) {
          process.stdout.write("No changes: the policy file is what is in force.\n");
          return;
        }
        process.stdout.write(`${r.changes.join("\n")}\n`);
        process.stdout.write(r.applied ? "Applied.\n" : "Dry run: nothing changed.\n");
      });
    });
}
