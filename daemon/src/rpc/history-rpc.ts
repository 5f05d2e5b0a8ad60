import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { HistoryEntrySchema, HistoryResponseSchema, type HistoryRequest, type HistoryResponse } from "@netfence/proto/daemon";
import { invalidArgument } from "@netfence/proto/errors";
import { isAttachmentId } from "@netfence/proto/parse";
import type { HistoryEntry } from "../history/history-entry.js";
import type { HistoryQuery } from "../history/policy-history.js";

/** At most this many entries per call (the CLI pages with --since). */
export const MAX_HISTORY_LIMIT = 1000;

/** What the History RPC reads (PolicyHistory implements it). */
export interface HistoryReader {
  query(q: HistoryQuery): HistoryEntry[];
  /** Entries kept now (status). */
  readonly size?: number;
  /** Failed writes of history.journal since start (status). */
  readonly writeErrors?: number;
}

/** DaemonService.History: validate the filters, read the kept entries (oldest first). */
export function historyCall(reader: HistoryReader, req: HistoryRequest): HistoryResponse {
  const id = req.attachmentId;
  if (id !== "" && !isAttachmentId(id)) throw invalidArgument(`attachment_id "${id.slice(0, 80)}" is not an attachment id`);
  if (req.limit < 0) throw invalidArgument(`limit must be 0 or more, got ${req.limit}`);
  let sinceMs = 0;
  if (req.since !== undefined) {
    sinceMs = timestampDate(req.since).getTime();
    if (!Number.isFinite(sinceMs)) throw invalidArgument("since is not a valid time");
  }
  const limit = req.limit === 0 ? MAX_HISTORY_LIMIT : Math.min(req.limit, MAX_HISTORY_LIMIT);
  const entries = reader.query({ attachmentId: id, sinceMs, limit });
  return create(HistoryResponseSchema, {
    entries: entries.map((e) =>
      create(HistoryEntrySchema, {
        seq: BigInt(e.seq),
        time: timestampFromMs(e.timeMs),
        attachmentId: e.attachmentId,
        source: e.source,
        action: e.action,
        commandId: e.commandId,
        controlPlane: e.controlPlane,
        summary: e.summary,
        result: e.result,
        error: e.error,
        skipped: [...e.skipped],
      }),
    ),
  });
}
