import { Command } from "commander";
import { toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { PacketEventSchema, Verdict, type PacketEvent } from "@netfence/proto/control";
import { withClient } from "../output.js";
import type { DaemonClient } from "../daemon-client.js";

/** How often `--follow` checks the kernel's lost-event counters. */
const LOSS_POLL_MS = 5000;

const VERDICT: Record<number, string> = { [Verdict.BLOCKED]: "blocked", [Verdict.AUDIT]: "would-block", [Verdict.ALLOWED]: "allowed" };

export function eventLine(e: PacketEvent): string {
  const t = e.time ? timestampDate(e.time).toISOString() : "-";
  // L2 frames (arp, ether-0x…) carry MAC addresses and no ports
  const l2 = e.protocol === "arp" || e.protocol.startsWith("ether-");
  const flow = l2 ? `${e.src} -> ${e.dst}` : `${e.src}:${e.srcPort} -> ${e.dst}:${e.dstPort}`;
  const folded = e.suppressed > 0n ? ` [+${e.suppressed} identical]` : "";
  // issue 15: the socket owner, when the kernel knew it (cgroup attachments)
  const owner = e.uid !== undefined ? ` uid=${e.uid}${e.user ? `(${e.user})` : ""}` : "";
  return `${t} ${e.attachmentId} ${VERDICT[e.verdict] ?? "?"} ${e.protocol} ${flow} ${e.reason}${e.rule ? ` (${e.rule})` : ""}${owner}${folded}\n`;
}

/**
 * Events the kernel could not queue (ring buffer full), per attachment, reported on stderr so the
 * event lines stay clean: once at start, then whenever a count grows (with --follow).
 */
function lossWatcher(client: DaemonClient, id: string): { check: () => Promise<void> } {
  const seen = new Map<string, bigint>();
  return {
    async check() {
      const { attachments } = await client.listAll(1000).catch(() => ({ attachments: [] }));
      for (const a of attachments) {
        if (id !== "" && a.id !== id) continue;
        const before = seen.get(a.id) ?? 0n;
        if (a.eventsLost > before) process.stderr.write(`# ${a.id}: ${a.eventsLost - before} events lost (kernel ring buffer full; ${a.eventsLost} since attach)\n`);
        seen.set(a.id, a.eventsLost);
      }
    },
  };
}

export function eventsCommand(): Command {
  return new Command("events")
    .description("show packet events (one line each): blocked, would-block (audit mode), allowed (new flows, when enabled)")
    .option("--id <id>", "only this attachment")
    .option("--follow", "keep streaming (default: stop after --count events)")
    .option("--count <n>", "stop after n events unless --follow", (v) => Number(v), 10)
    .option("--json", "print JSON lines")
    .action(async (opts: { id?: string; follow?: boolean; count: number; json?: boolean }, cmd: Command) => {
      await withClient(cmd, async (client) => {
        const loss = lossWatcher(client, opts.id ?? "");
        await loss.check();
        const timer = opts.follow ? setInterval(() => void loss.check(), LOSS_POLL_MS) : null;
        timer?.unref();
        try {
          let n = 0;
          for await (const e of client.watchEvents(opts.id ?? "")) {
            process.stdout.write(opts.json ? `${JSON.stringify(toJson(PacketEventSchema, e))}\n` : eventLine(e));
            if (!opts.follow && ++n >= opts.count) break;
          }
        } finally {
          if (timer !== null) clearInterval(timer);
        }
      });
    });
}
