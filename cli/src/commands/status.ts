import { Command } from "commander";
import { toJson } from "@bufbuild/protobuf";
import { ConnectionState, DaemonStatusSchema } from "../../../proto/gen/netfence/v1/daemon_pb.js";
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
        process.stdout.write(
          [`Version:       ${s.version}`, `Daemon ID:     ${s.daemonId}`, `Hostname:      ${s.hostname}`, `Control plane: ${cp}`, `Attachments:   ${s.attachmentCount}`, `TC attach:     ${s.tcAttachMethod || "unknown"} (probed from the kernel)`].join("\n") +
            "\n",
        );
      });
    });
}
