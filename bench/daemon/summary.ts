import { mean, median, percentile, round } from "../lib/stats.js";

/** Latency samples in milliseconds, summarised (nearest-rank percentiles). */
export interface MsSummary {
  readonly count: number;
  readonly p50_ms: number;
  readonly p90_ms: number;
  readonly p99_ms: number;
  readonly mean_ms: number;
  readonly min_ms: number;
  readonly max_ms: number;
}

export function summarize(samples: readonly number[]): MsSummary {
  if (samples.length === 0) throw new RangeError("no samples to summarise");
  return {
    count: samples.length,
    p50_ms: round(percentile(samples, 50), 3),
    p90_ms: round(percentile(samples, 90), 3),
    p99_ms: round(percentile(samples, 99), 3),
    mean_ms: round(mean(samples), 3),
    min_ms: round(Math.min(...samples), 3),
    max_ms: round(Math.max(...samples), 3),
  };
}

export { median, round };

export const kibToMib = (kib: number): number => round(kib / 1024, 1);
export const kibToMb = (kib: number): number => round((kib * 1024) / 1e6, 1);
