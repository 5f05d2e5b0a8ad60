import { Command } from "commander";
import { usageError, withClient } from "../output.js";

/**
 * `netfenced audit --id ID on|off`: audit mode for one attachment of a standalone daemon. On, the
 * policy is evaluated and what it would block passes and is reported ("would block" in
 * `netfenced events`); guards (spoofing, other tenants' DNS, protected-deny) still drop. With a
 * control plane, it sets audit mode itself (the daemon refuses).
 */
export function auditCommand(): Command {
  return new Command("audit")
    .description("audit mode for one attachment (standalone daemons): report what the policy would block, drop nothing on its account")
    .requiredOption("--id <id>", "attachment id (from attach or list)")
    .argument("<on|off>", "on: report and let through; off: enforce")
    .action(async (state: string, opts: { id: string }, cmd: Command) => {
      if (state !== "on" && state !== "off") {
        usageError(`audit takes "on" or "off", not "${state}"`);
        return;
      }
      await withClient(cmd, async (client) => {
        await client.setAudit(opts.id, state === "on");
        process.stdout.write(state === "on" ? `Audit mode on for ${opts.id}: blocked traffic passes and is reported as "would block"\n` : `Audit mode off for ${opts.id}: enforcing\n`);
      });
    });
}
