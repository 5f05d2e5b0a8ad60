import type { Duration } from "@bufbuild/protobuf/wkt";
import { invalidArgument } from "../errors.js";

/**
 * Durations as the contract's users write them — the daemon's config ("5s", "250ms", "1m30s")
 * and policy files ("30s", "5m", "2h", "1d") — and as the wire carries them (protobuf Duration).
 */

/** A TTL above this is almost certainly a unit mistake (ms sent as s); rejected rather than overflow deadlines. */
export const MAX_TTL_SECONDS = 10 * 365 * 24 * 3600;

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * "250ms", "5s", "1m30s", "2h", "1d" (units may follow each other; spaces between are fine) or
 * a bare number of seconds ("90", 90, 1.5) → milliseconds. Null when it is not a duration
 * (negative, empty, an unknown unit).
 */
export function parseDurationMs(value: string | number): number | null {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? value * 1000 : null;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const re = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*/y;
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    consumed = re.lastIndex;
  }
  return consumed === text.length && text.length > 0 ? total : null;
}

/**
 * A protobuf Duration (a TTL on the wire) → milliseconds. Zero means "no TTL" (as in the Go
 * original); negative, malformed or over MAX_TTL_SECONDS is rejected naming `field`.
 */
export function durationToMs(ttl: Duration, field: string): number {
  const { seconds, nanos } = ttl;
  if (nanos < -999_999_999 || nanos > 999_999_999) throw invalidArgument(`${field} has nanos ${nanos} out of range`);
  if ((seconds > 0n && nanos < 0) || (seconds < 0n && nanos > 0)) throw invalidArgument(`${field} has seconds and nanos of different signs`);
  if (seconds < 0n || nanos < 0) throw invalidArgument(`${field} is negative (${seconds}s)`);
  if (seconds > BigInt(MAX_TTL_SECONDS)) throw invalidArgument(`${field} of ${seconds}s exceeds the maximum of ${MAX_TTL_SECONDS}s (10 years)`);
  return Number(seconds) * 1000 + Math.ceil(nanos / 1_000_000);
}

/** `parseDurationMs` in seconds (policy files write TTLs in seconds by default). */
export function parseDurationSeconds(value: string | number): number | null {
  const ms = parseDurationMs(value);
  return ms === null ? null : ms / 1000;
}
