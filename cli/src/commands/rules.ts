import { Command } from "commander";
import { toJson } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ListRulesResponseSchema, type RuleInfo } from "@netfence/proto/daemon";
import { PolicyMode } from "@netfence/proto/types";
import { formatTable, printJson, withClient } from "../output.js";

export const MODE: Record<number, string> = {
  [PolicyMode.DISABLED]: "disabled",
  [PolicyMode.ALLOWLIST]: "allowlist",
  [PolicyMode.DENYLIST]: "denylist",
  [PolicyMode.BLOCK_ALL]: "block-all",
};

export const RULES_HEADER = ["RULE ID", "RULE", "ACTION", "KERNEL ENTRIES", "PACKETS", "LAST HIT", "EXPIRES"];

/** "3s ago", "2m ago", "1h ago" (or the ISO time beyond a day); "-" for never. */
export function ago(ms: number, nowMs: number): string {
  if (ms <= 0) return "-";
  const s = Math.max(0, Math.round((nowMs - ms) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return new Date(ms).toISOString();
}

export function ruleRows(rules: readonly RuleInfo[], nowMs: number): string[][] {
  return rules.map((r) => {
    const entries = r.kernelEntries === 0 ? "0" : r.kind === "cidr" ? String(r.kernelEntries) : `${r.kernelEntries} (${r.prefixes.slice(0, 3).join(", ")}${r.kernelEntries > 3 ? ", …" : ""})`;
    return [
      String(r.ruleId),
      r.inDaemon ? r.rule : `${r.rule} (kernel only)`,
      r.action,
      r.kind === "reserved" || r.kind === "overflow" ? "-" : entries,
      r.packets.toString(),
      ago(r.lastHit ? timestampMs(r.lastHit) : 0, nowMs),
      r.expiresAt ? new Date(timestampMs(r.expiresAt)).toISOString() : "-",
    ];
  });
}

export function rulesCommand(): Command {
  return new Command("rules")
    .description("an attachment's rules as the kernel holds them, with packets per rule and the last hit")
    .requiredOption("--id <id>", "attachment id")
    .option("--json", "print JSON")
    .action(async (opts: { id: string; json?: boolean }, cmd: Command) => {
      await withClient(cmd, async (client) => {
        const res = await client.listRules(opts.id);
        if (opts.json) {
          printJson(toJson(ListRulesResponseSchema, res));
          return;
        }
        process.stdout.write(`Attachment ${res.id}: mode ${MODE[res.mode] ?? "?"}${res.audit ? " (audit)" : ""} in the kernel\n`);
        process.stdout.write(formatTable(RULES_HEADER, ruleRows(res.rules, Date.now())));
        if (res.overflowedRules > 0) {
          process.stdout.write(`\n${res.overflowedRules} rules beyond the kernel's ${res.capacity} counters share the "overflow" rule's count.\n`);
        }
      });
    });
}
