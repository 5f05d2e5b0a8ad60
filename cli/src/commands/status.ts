import { Command } from "commander";
import { toJson } from "@bufbuild/protobuf";
import { ConnectionState, DaemonStatusSchema } from "@netfence/proto/daemon";
import { ListRulesResponseSchema } from "@netfence/proto/daemon";
import { isNetfenceError } from "@netfence/proto/errors";
import { formatTable, printJson, withClient } from "../output.js";
import { ago, MODE, RULES_HEADER, ruleRows } from "./rules.js";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { BlockedByOwner } from "@netfence/proto/daemon";
import type { DaemonClient } from "../daemon-client.js";

const STATE: Record<number, string> = {
  [ConnectionState.CONNECTED]: "connected",
  [ConnectionState.CONNECTING]: "connecting",
  [ConnectionState.DISCONNECTED]: "disconnected",
};

export function statusCommand(): Command {
  return new Command("status")
    .description("show the daemon's version, id, control-plane state and attachment count")
    .option("--json", "print JSON")
    .option("--rules", "also every attachment's rules with their kernel hit counts (as `netfenced rules`)")
    .action(async (opts: { json?: boolean; rules?: boolean }, cmd: Command) => {
      await withClient(cmd, async (client) => {
        const s = await client.getStatus();
        if (opts.json) {
          const status = toJson(DaemonStatusSchema, s, { alwaysEmitImplicit: true }) as Record<string, unknown>;
          printJson(opts.rules ? { ...status, rules: (await allRules(client)).map((r) => toJson(ListRulesResponseSchema, r)) } : status);
          return;
        }
        const cp = s.controlPlaneAddress === "" ? "none (local default policy)" : `${STATE[s.controlPlaneState] ?? "unknown"} (${s.controlPlaneAddress})`;
        const lines = [`Version:       ${s.version}`, `Daemon ID:     ${s.daemonId}`, `Hostname:      ${s.hostname}`, `Control plane: ${cp}`, `Attachments:   ${s.attachmentCount}`, `TC attach:     ${s.tcAttachMethod || "unknown"} (probed from the kernel)`];
        if (s.orphanCount > 0) {
          // Orphans keep enforcing; say which and what to do about them.
          const { orphans } = await client.listOrphans();
          lines.push(`Orphans:       ${s.orphanCount} pinned filter(s) unknown to the daemon's state, still enforcing`);
          for (const o of orphans) lines.push(`  ${o.id}  ${o.target}  ${o.attached ? "attached" : "NOT attached"}  ${o.entries} entries${o.problem ? `  (${o.problem})` : ""}`);
          lines.push("  re-register: netfenced adopt --id ID | --all;  remove: netfenced detach --orphan ID");
        }
        lines.push(`History:       ${s.historyEntries} policy changes kept (netfenced history)`);
        if (s.historyWriteErrors > 0) lines.push(`Warning:       ${s.historyWriteErrors} write(s) of history.journal failed; those entries are kept in memory only (see the daemon log)`);
        // Packet events the kernel could not queue (ring buffer full), summed over attachments.
        const lost = s.attachmentCount === 0 ? 0n : (await client.listAll(1000)).attachments.reduce((n, a) => n + a.eventsLost, 0n);
        if (lost > 0n) lines.push(`Events lost:   ${lost} (kernel ring buffer full; per attachment: list --json eventsLost)`);
        for (const w of s.warnings) lines.push(`Warning:       ${w}`);
        process.stdout.write(lines.join("\n") + "\n");
        if (opts.rules) {
          const now = Date.now();
          for (const r of await allRules(client)) {
            process.stdout.write(`\nAttachment ${r.id}: mode ${MODE[r.mode] ?? "?"}${r.audit ? " (audit)" : ""} in the kernel\n`);
            process.stdout.write(formatTable(RULES_HEADER, ruleRows(r.rules, now)));
            process.stdout.write(r.blockedByOwner.length === 0 ? "Blocked attempts by user: none recorded since the daemon started\n" : `Blocked attempts by user:\n${formatTable(OWNER_HEADER, ownerRows(r.blockedByOwner, now))}`);
          }
        }
      });
    });
}

/** ListRules of every attachment (an attachment detached meanwhile is skipped). */
async function allRules(client: DaemonClient) {
  const { attachments } = await client.listAll(1000);
  const out = [];
  for (const a of attachments) {
    try {
      out.push(await client.listRules(a.id));
    } catch (err) {
      if (!(isNetfenceError(err) && err.code === "NOT_FOUND")) throw err; // detached between List and ListRules
    }
  }
  return out;
}

export const OWNER_HEADER = ["USER", "UID", "BLOCKED", "AUDITED", "LAST"];

/** One row per socket owner: "web", 33, … ; "(unknown)" / "(other uids)" for the aggregate rows. */
export function ownerRows(owners: readonly BlockedByOwner[], nowMs: number): string[][] {
  return owners.map((o) => [
    o.kind === "uid" ? (o.user || "-") : o.kind === "unknown" ? "(unknown owner)" : "(other uids)",
    o.kind === "uid" ? String(o.uid) : "-",
    o.blocked.toString(),
    o.audited.toString(),
    ago(o.last ? timestampMs(o.last) : 0, nowMs),
  ]);
}
