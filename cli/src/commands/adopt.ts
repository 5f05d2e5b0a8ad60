import { Command } from "commander";
import { toJson } from "@bufbuild/protobuf";
import { AdoptOrphansResponseSchema } from "@netfence/proto/daemon";
import { EXIT, printJson, usageError, withClient } from "../output.js";

/**
 * `netfenced adopt`: re-registers orphaned filters (pinned, unknown to the state store) as
 * attachments, their policy read back from the kernel maps. Without --id/--all: lists them.
 */
export function adoptCommand(): Command {
  return new Command("adopt")
    .description("re-register orphaned filters (pinned but unknown to the daemon's state) with the policy their maps enforce; without --id/--all, list them")
    .option("--id <id>", "one orphan (its pin directory name, as `netfenced status` lists it)")
    .option("--all", "every orphan")
    .option("--json", "print JSON")
    .action(async (opts: { id?: string; all?: boolean; json?: boolean }, cmd: Command) => {
      if (opts.id !== undefined && opts.all) {
        usageError("adopt takes --id ID or --all, not both");
        return;
      }
      await withClient(cmd, async (client) => {
        if (opts.id === undefined && !opts.all) {
          const { orphans } = await client.listOrphans();
          if (opts.json) {
            printJson(orphans.map((o) => ({ id: o.id, target: o.target, attached: o.attached, dnsPort: o.dnsPort, entries: o.entries, problem: o.problem })));
            return;
          }
          if (orphans.length === 0) process.stdout.write("No orphaned filters.\n");
          for (const o of orphans) {
            process.stdout.write(`${o.id}  ${o.target}  ${o.attached ? "attached" : "NOT attached"}  ${o.entries} entries${o.problem ? `  (${o.problem})` : ""}\n`);
          }
          return;
        }
        const res = await client.adoptOrphans(opts.all ? { all: true } : { id: opts.id! });
        if (opts.json) printJson(toJson(AdoptOrphansResponseSchema, res, { alwaysEmitImplicit: true }));
        else {
          for (const a of res.adopted) process.stdout.write(`Adopted ${a.id} (DNS Address: ${a.dnsAddress})\n`);
          for (const f of res.failed) process.stderr.write(`Error: ${f.id}: ${f.error}\n`);
          if (res.adopted.length === 0 && res.failed.length === 0) process.stdout.write("No orphaned filters.\n");
        }
        if (res.failed.length > 0) process.exitCode = EXIT.failed;
      });
    });
}
