/** One target's dnsperf rounds summarized: median q/s and latency, percentiles over every sample, response codes. */
import { median } from "./decision-bench.js";
import { percentile, type DnsperfResult } from "./dnsperf.js";

export type Figure<U extends string> = { value: number; unit: U };

export interface RunSummary {
  rounds: number;
  queries_completed: number[];
  queries_lost: number[];
  response_codes: Record<string, number>;
  /** median over the rounds; `per_round` in run order */
  qps: Figure<"queries/s"> & { per_round: number[] };
  latency_avg: Figure<"µs"> & { per_round: number[] };
  latency_max: Figure<"µs">;
  latency_p50?: Figure<"µs">;
  latency_p90?: Figure<"µs">;
  latency_p99?: Figure<"µs">;
  samples?: number;
  note: string;
}

export const round = (v: number, digits = 1): number => Math.round(v * 10 ** digits) / 10 ** digits;

/** p50/p90/p99 (µs, nearest rank) and the sample count of a set of per-query latencies. */
export function latencyPercentiles(latenciesUs: readonly number[]): { p50: Figure<"µs">; p90: Figure<"µs">; p99: Figure<"µs">; samples: number } {
  const sorted = [...latenciesUs].sort((a, b) => a - b);
  const at = (p: number): Figure<"µs"> => ({ value: round(percentile(sorted, p)), unit: "µs" });
  return { p50: at(50), p90: at(90), p99: at(99), samples: sorted.length };
}

export function summarize(rs: readonly DnsperfResult[], note: string): RunSummary {
  const rcodes: Record<string, number> = {};
  for (const r of rs) for (const [k, v] of Object.entries(r.rcodes)) rcodes[k] = (rcodes[k] ?? 0) + v;
  const s: RunSummary = {
    rounds: rs.length,
    queries_completed: rs.map((r) => r.completed),
    queries_lost: rs.map((r) => r.lost),
    response_codes: rcodes,
    qps: { value: round(median(rs.map((r) => r.qps)), 0), unit: "queries/s", per_round: rs.map((r) => round(r.qps, 0)) },
    latency_avg: { value: round(median(rs.map((r) => r.avgLatencyUs))), unit: "µs", per_round: rs.map((r) => round(r.avgLatencyUs)) },
    latency_max: { value: round(Math.max(...rs.map((r) => r.maxLatencyUs))), unit: "µs" },
    note,
  };
  const latencies = rs.flatMap((r) => r.latenciesUs);
  if (latencies.length > 0) {
    const l = latencyPercentiles(latencies);
    s.latency_p50 = l.p50;
    s.latency_p90 = l.p90;
    s.latency_p99 = l.p99;
    s.samples = l.samples;
  }
  return s;
}
