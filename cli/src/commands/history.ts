import { Command, InvalidArgumentError } from "commander";
import { toJson } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { HistoryEntrySchema, type HistoryEntry } from "@netfence/proto/daemon";
import { isAttachmentId, parseDurationMs } from "@netfence/proto/parse";
import { formatTable, printJson, withClient } from "../output.js";

const RFC3339 = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i;

/** "--since 1h" (a duration back from now) or an RFC 3339 time → ms since the epoch. */
export function parseSince(text: string, nowMs: number = Date.now()): number {
  const ago = parseDurationMs(text);
  if (ago !== null) return nowMs - ago;
  if (RFC3339.test(text.trim())) {
    const ms = Date.parse(text.trim());
    if (Number.isFinite(ms)) return ms;
  }
  throw new InvalidArgumentError('expected a duration back from now ("90s", "15m", "1h", "2d") or an RFC 3339 time ("2026-12-03T09:00:00Z")');
}

function limitOf(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new InvalidArgumentError("must be an integer in 1..1000");
  return n;
}

function idOf(v: string): string {
  if (!isAttachmentId(v)) throw new InvalidArgumentError(`"${v}" is not an attachment id`);
  return v;
}

export function historyRows(entries: readonly HistoryEntry[]): string[][] {
  return entries.map((e) => {
    const ms = e.time === undefined ? 0 : timestampMs(e.time);
    const result = e.result === "rejected" ? `rejected: ${e.error}` : e.skipped.length > 0 ? `${e.result} (skipped ${e.skipped.length}: ${e.skipped.slice(0, 2).join("; ")})` : e.result;
    return [new Date(ms).toISOString(), e.attachmentId || "-", e.source, e.commandId || "-", e.action, e.summary, result];
  });
}

export const HISTORY_HEADER = ["TIME", "ATTACHMENT", "SOURCE", "COMMAND ID", "ACTION", "WHAT", "RESULT"];

export function historyCommand(): Command {
  return new Command("history")
    .description("policy changes the daemon made or refused (audit trail), oldest first")
    .option("--id <id>", "one attachment only", idOf)
    .option("--since <when>", 'only changes since a duration ago ("1h") or an RFC 3339 time', (v) => parseSince(v))
    .option("--limit <n>", "the newest N entries (max 1000)", limitOf, 100)
    .option("--json", "print JSON")
    .action(async (opts: { id?: string; since?: number; limit: number; json?: boolean }, cmd: Command) => {
      await withClient(cmd, async (client) => {
        const res = await client.history({ attachmentId: opts.id ?? "", limit: opts.limit, ...(opts.since !== undefined ? { sinceMs: opts.since } : {}) });
        if (opts.json) {
          printJson({ entries: res.entries.map((e) => toJson(HistoryEntrySchema, e)) });
          return;
        }
        if (res.entries.length === 0) {
          process.stdout.write("No policy changes recorded.\n");
          return;
        }
        process.stdout.write(formatTable(HISTORY_HEADER, historyRows(res.entries)));
      });
    });
}
