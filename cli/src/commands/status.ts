import { Command } from "commander";
import { toJson } from "@bufbuild/protobuf";
import { ConnectionState, DaemonStatusSchema } from "@netfence/proto/daemon";
import { printJson, withClient } from "../output.js";

const STATE: Record<number, string> = {
  [ConnectionState.CONNECTED]: "connected",
  [ConnectionState.CONNECTING]: "connecting",
  [ConnectionState.DISCONNECTED]: "disconnected",
};

export function statusCommand(): Command {
  return new Command("status")
    .description("show the daemon's version, id, control-plane state and attachment count")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      await withClient(cmd, async (client) => {
        const s = await client.getStatus();
        if (opts.json) {
          printJson(toJson(DaemonStatusSchema, s, { alwaysEmitImplicit: true }));
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
      });
    });
}
