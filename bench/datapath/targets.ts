import type { InsertResult } from "./inserts.js";
import type { PerPacketResult } from "./per-packet.js";
import type { ThroughputResult } from "./throughput.js";

/** The issue-3 targets, checked against the figures of the same run. */
export interface TargetCheck {
  readonly name: string;
  readonly target: string;
  readonly measured: string;
  readonly met: boolean;
  /** How far from the target, in the target's unit (positive = worse than the target). */
  readonly miss_by: string | null;
  /** Set when the run's own spread cannot resolve the comparison (e.g. overlapping interquartile ranges). */
  readonly note?: string;
}

interface Parts {
  readonly per_packet?: PerPacketResult;
  readonly throughput?: ThroughputResult;
  readonly inserts?: InsertResult;
}

/** Enough digits that a figure just over a limit never prints as the limit itself. */
const fmt = (x: number, unit: string) => `${Number.isInteger(x) ? x : Math.abs(x) < 10 ? Number(x.toFixed(3)) : Number(x.toFixed(2))} ${unit}`;

export function evaluateTargets(p: Parts): TargetCheck[] {
  const out: TargetCheck[] = [];
  const check = (name: string, target: string, measured: number, limit: number, unit: string, higherIsBetter = false, missUnit = unit) => {
    const met = higherIsBetter ? measured >= limit : measured <= limit;
    out.push({ name, target, measured: fmt(measured, unit), met, miss_by: met ? null : fmt(Math.abs(measured - limit), missUnit) });
  };
  if (p.per_packet) {
    const big = Math.max(...p.per_packet.cases.map((c) => c.entries_per_family));
    for (const c of p.per_packet.cases.filter((x) => x.entries_per_family === big)) {
      const size = big >= 1000 && big % 1000 === 0 ? `${big / 1000}k` : String(big);
      const label = `per-packet, ${size} entries, IPv${c.family} ${c.case.replace("_", " ")}`;
      if (c.case === "host_hit") {
        check(`${label}: netfence over no-op`, "≤ 10 ns over no-op", c.netfence_over_noop_ns, 10, "ns");
      } else {
        out.push({
          name: `${label}: netfence vs single LPM trie`,
          target: "no slower than the single LPM trie",
          measured: `netfence ${c.netfence_ns} ns, single LPM ${c.single_lpm_ns} ns`,
          met: c.netfence_ns <= c.single_lpm_ns,
          miss_by: c.netfence_ns <= c.single_lpm_ns ? null : fmt(c.netfence_ns - c.single_lpm_ns, "ns"),
        });
      }
    }
  }
  if (p.throughput) {
    for (const prof of p.throughput.profiles) {
      const v = new Map(prof.variants.map((x) => [x.variant, x]));
      const nf = v.get("netfence")!;
      const tag = prof.profile === "default" ? "" : ` [${prof.profile} profile]`;
      const iqr = (x: typeof nf) => `${x.paired_p25_pct}–${x.paired_p75_pct} %`;
      check(`TCP throughput with netfence (10k entries) vs no filter${tag}`, "≥ 97 % of unfiltered, paired per round", nf.paired_vs_none_pct, 97, "%", true, "percentage points");
      if (nf.paired_p25_pct < 97 && nf.paired_p75_pct > 97) {
        out[out.length - 1] = { ...out[out.length - 1]!, note: `not resolvable in this run: netfence's paired p25–p75 is ${iqr(nf)}` };
      }
      for (const other of ["nftables", "iptables"] as const) {
        const x = v.get(other)!;
        const met = nf.paired_vs_none_pct > x.paired_vs_none_pct;
        const overlap = nf.paired_p25_pct <= x.paired_p75_pct && x.paired_p25_pct <= nf.paired_p75_pct;
        out.push({
          name: `TCP throughput netfence vs ${other}${tag}`,
          target: `ahead of ${other}`,
          measured: `netfence ${nf.paired_vs_none_pct} %, ${other} ${x.paired_vs_none_pct} % of unfiltered (medians ${nf.throughput_gbit_s} vs ${x.throughput_gbit_s} Gbit/s)`,
          met,
          miss_by: met ? null : fmt(x.paired_vs_none_pct - nf.paired_vs_none_pct, "percentage points"),
          ...(overlap ? { note: `not resolvable in this run: paired p25–p75 netfence ${iqr(nf)}, ${other} ${iqr(x)}` } : {}),
        });
      }
    }
  }
  if (p.inserts) {
    check("single insert round trip TS → loader → kernel, p50", "p50 ≤ 50 µs", p.inserts.single_insert.p50_us, 50, "µs");
    check("batched insert of 10k /32 entries, per entry", "≤ 2 µs per entry", p.inserts.batch_insert_hosts.per_entry_us, 2, "µs");
    check("batched insert of 10k prefixes, per entry", "≤ 2 µs per entry", p.inserts.batch_insert_prefixes.per_entry_us, 2, "µs");
    check("atomic replace of 10k entries (half /32, half prefixes), p50", "≤ 20 ms", p.inserts.replace_10k.p50_ms, 20, "ms");
    if (p.inserts.replace_10k_hosts) check("atomic replace of 10k /32 entries, p50", "≤ 20 ms", p.inserts.replace_10k_hosts.p50_ms, 20, "ms");
  }
  return out;
}
