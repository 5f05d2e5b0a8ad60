/**
 * One entry of the audit trail of policy changes (seed 004 NFR-5, issue 14): who changed which
 * attachment's policy, when, what changed and whether it took. Kept in data_dir/history.journal
 * (history-file.ts), served by DaemonService.History / `netfenced history`, counted in
 * `netfence_policy_changes_total{source,result}`.
 */

/** Where a change came from (a closed set: it is a metric label). */
/** "apply": the standalone policy file (`netfenced apply -f`); "flush": `netfenced flush`. */
export const HISTORY_SOURCES = ["control-plane", "cli", "default-policy", "dns-learned", "daemon", "apply", "flush"] as const;
export type HistorySource = (typeof HISTORY_SOURCES)[number];

/**
 * applied    the change is in the kernel (entries the command skipped as bad are listed in `skipped`)
 * rejected   nothing changed (`error` says why)
 * unchanged  accepted, but the policy already was exactly that (no kernel write)
 */
export const HISTORY_RESULTS = ["applied", "rejected", "unchanged"] as const;
export type HistoryResult = (typeof HISTORY_RESULTS)[number];

export interface HistoryEntry {
  /** Increasing across restarts (the file's last seq + 1 on load). */
  readonly seq: number;
  readonly timeMs: number;
  /** "" for an entry that is not about one attachment. */
  readonly attachmentId: string;
  readonly source: HistorySource;
  /**
   * What happened: a command kind ("set-mode", "bulk-update", "subscribed-ack", …) or a lifecycle
   * event ("attach", "detach", "removed", "adopt", "restore", "dns-learned").
   */
  readonly action: string;
  /** The control plane's `command_id`, "" when it set none (or the change is not a command). */
  readonly commandId: string;
  /** The control plane's address for source "control-plane", else "". */
  readonly controlPlane: string;
  /** A compact description of the change: "mode allowlist→denylist", "+3/-1 CIDRs (+10.0.0.0/8 …)". */
  readonly summary: string;
  readonly result: HistoryResult;
  /** Why it was rejected; "" otherwise. */
  readonly error: string;
  /** Entries the command carried that were skipped as bad (the rest applied). */
  readonly skipped: readonly string[];
}

/** What a caller records; seq and (by default) the time are filled in by the history. */
export type HistoryRecord = Omit<HistoryEntry, "seq" | "timeMs" | "commandId" | "controlPlane" | "error" | "skipped"> &
  Partial<Pick<HistoryEntry, "timeMs" | "commandId" | "controlPlane" | "error" | "skipped">>;

/** Where a policy command came from, handed to the command applier with the command. */
export interface CommandOrigin {
  readonly source: HistorySource;
  readonly commandId?: string | null;
  readonly controlPlane?: string;
  /** Entries skipped as bad when the command was parsed (they are not part of the command). */
  readonly skipped?: readonly string[];
  /** Recorded as the action instead of the command's kind (e.g. "subscribed-ack"). */
  readonly action?: string;
}

/** A stored line back into an entry; null when it is not one (a hand-edited or foreign line). */
export function entryFromJson(v: unknown): HistoryEntry | null {
  if (typeof v !== "object" || v === null) return null;
  const o = v as Record<string, unknown>;
  const str = (k: string): string | null => (typeof o[k] === "string" ? (o[k] as string) : null);
  const seq = o.seq;
  const timeMs = o.timeMs;
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || typeof timeMs !== "number" || !Number.isFinite(timeMs)) return null;
  const source = str("source");
  const result = str("result");
  if (source === null || !(HISTORY_SOURCES as readonly string[]).includes(source)) return null;
  if (result === null || !(HISTORY_RESULTS as readonly string[]).includes(result)) return null;
  const skipped = Array.isArray(o.skipped) ? o.skipped.filter((s): s is string => typeof s === "string") : [];
  return {
    seq,
    timeMs,
    attachmentId: str("attachmentId") ?? "",
    source: source as HistorySource,
    action: str("action") ?? "",
    commandId: str("commandId") ?? "",
    controlPlane: str("controlPlane") ?? "",
    summary: str("summary") ?? "",
    result: result as HistoryResult,
    error: str("error") ?? "",
    skipped,
  };
}
