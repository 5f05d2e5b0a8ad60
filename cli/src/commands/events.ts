import { Command } from "commander";
import { toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { PacketEventSchema, Verdict } from "@netfence/proto/control";
import { withClient } from "../output.js";

export function eventsCommand(): Command {
  return new Command("events")
    .description("show blocked/audited packet events (one line each)")
    .option("--id <id>", "only this attachment")
    .option("--follow", "keep streaming (default: stop after --count events)")
    .option("--count <n>", "stop after n events unless --follow", (v) => Number(v), 10)
    .option("--json", "print JSON lines")
    .action(async (opts: { id?: string; follow?: boolean; count: number; json?: boolean }, cmd: Command) => {
      await withClient(cmd, async (client) => {
        let n = 0;
        for await (const e of client.watchEvents(opts.id ?? "")) {
          if (opts.json) process.stdout.write(`${JSON.stringify(toJson(PacketEventSchema, e))}\n`);
          else {
            const t = e.time ? timestampDate(e.time).toISOString() : "-";
            const verdict = e.verdict === Verdict.AUDIT ? "audit" : "blocked";
            // L2 frames (arp, ether-0x…) carry MAC addresses and no ports
            const l2 = e.protocol === "arp" || e.protocol.startsWith("ether-");
            const flow = l2 ? `${e.src} -> ${e.dst}` : `${e.src}:${e.srcPort} -> ${e.dst}:${e.dstPort}`;
            process.stdout.write(`${t} ${e.attachmentId} ${verdict} ${e.protocol} ${flow} ${e.reason}${e.rule ? ` (${e.rule})` : ""}\n`);
          }
          if (!opts.follow && ++n >= opts.count) break;
        }
      });
    });
}
