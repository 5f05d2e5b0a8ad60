import type { DatapathResults } from "./results.js";
import { mdRow, spliceResultsSection } from "../lib/readme-results.js";

/** Renders the results section of bench/datapath/README.md (between the markers; the rest of the file is hand-written). */

export function renderMarkdown(existing: string, r: DatapathResults): string {
  return spliceResultsSection(existing, "bench/datapath/run.ts", resultsSection(r));
}

const row = mdRow;
const sign = (x: number) => (x >= 0 ? `+${x}` : `${x}`);

function resultsSection(r: DatapathResults): string {
  const m = r.machine;
  const out: string[] = [];
  out.push(
    `Run ${m.date} on ${m.nproc} × ${m.cpuModel}, ${m.memTotalMiB} MiB, kernel ${m.kernel}, Node ${m.node}` +
      ` (${r.duration_s} s${r.quick ? ", QUICK run: not representative" : ""}); 1-minute load average ${m.loadavg1} at the start, ${r.loadavg1_end} at the end` +
      " (other work shares this machine). Raw figures: `bench/results/datapath.json`.",
  );
  out.push("", "### Targets", "", row(["target", "measured", "met"]), row(["---", "---", "---"]));
  for (const t of r.targets) out.push(row([`${t.name} — target ${t.target}`, t.measured, (t.met ? "yes" : `**no** (by ${t.miss_by})`) + (t.note ? ` — ${t.note}` : "")]));
  const pp = r.per_packet;
  if (pp) {
    out.push(
      "",
      `### 1. Per-packet cost (BPF_PROG_TEST_RUN, repeat ${pp.repeat.toLocaleString("en")}, median of ${pp.rounds} interleaved rounds)`,
      "",
      `Entry mix: ${pp.entry_mix}.`,
      "",
      row(["entries / family", "IP", "case", "no-op ns", "single LPM ns (over no-op)", "netfence ns (over no-op)", "verdict"]),
      row(["---:", "---", "---", "---:", "---:", "---:", "---"]),
    );
    for (const c of pp.cases) {
      out.push(
        row([
          c.entries_per_family.toLocaleString("en"),
          `v${c.family}`,
          c.case.replace("_", " "),
          c.noop_ns,
          `${c.single_lpm_ns} (${sign(c.single_lpm_over_noop_ns)})`,
          `${c.netfence_ns} (${sign(c.netfence_over_noop_ns)})`,
          c.verdicts.netfence,
        ]),
      );
    }
    out.push(
      "",
      "Diagnostic programs (same run, same probes): netfence's lookup design alone — exact hash then LPM, nothing else — in static maps (`hash_lpm`), behind an ARRAY_OF_MAPS slot like netfence's generations (`hash_lpm_mim`), and that plus a lookup in an empty LPM trie like netfence's per-packet protected-set check (`hash_lpm_mim_prot`), ns over no-op:",
      "",
      row(["entries / family", "IP", "case", "single LPM", "hash_lpm (static)", "hash_lpm_mim (map-in-map)", "hash_lpm_mim_prot (+ empty protected trie)", "netfence_tc"]),
      row(["---:", "---", "---", "---:", "---:", "---:", "---:", "---:"]),
    );
    for (const c of pp.cases) {
      out.push(
        row([
          c.entries_per_family.toLocaleString("en"),
          `v${c.family}`,
          c.case.replace("_", " "),
          sign(c.single_lpm_over_noop_ns),
          sign(c.diagnostics.hash_lpm_over_noop_ns),
          sign(c.diagnostics.hash_lpm_mim_over_noop_ns),
          sign(c.diagnostics.hash_lpm_mim_prot_over_noop_ns),
          sign(c.netfence_over_noop_ns),
        ]),
      );
    }
    out.push(
      "",
      "Diagnostic — the miss probes again with the attachment in **denylist** mode (the miss passes: no drop counter, no event/throttle path), i.e. the lookup cost alone:",
      "",
      row(["entries / family", "IP", "no-op ns", "single LPM ns", "hash_lpm ns", "hash_lpm_mim ns", "netfence ns (over no-op)"]),
      row(["---:", "---", "---:", "---:", "---:", "---:", "---:"]),
    );
    for (const d of pp.denylist_miss) {
      out.push(
        row([d.entries_per_family.toLocaleString("en"), `v${d.family}`, d.noop_ns, d.single_lpm_ns, d.hash_lpm_ns, d.hash_lpm_mim_ns, `${d.netfence_ns} (${sign(d.netfence_over_noop_ns)})`]),
      );
    }
  }
  const tp = r.throughput;
  if (tp) {
    out.push("", `### 2. TCP throughput and RTT (${tp.entries.toLocaleString("en")} CIDRs; iptables: ${tp.iptables_rules} rules)`, "", `${tp.topology}. ${tp.statistic}; ${tp.ping}.`);
    for (const prof of tp.profiles) {
      out.push(
        "",
        `**Profile \`${prof.profile}\`** — ${prof.description}; ${prof.iperf3}; ${prof.rounds} interleaved rounds.`,
        "",
        row(["variant", "Gbit/s median (samples by round)", "% of no filter: paired median [p25–p75] / of medians", "RTT p50 / p99 µs", "blocks an unlisted destination"]),
        row(["---", "---:", "---:", "---:", "---"]),
      );
      for (const v of prof.variants) {
        out.push(
          row([
            v.variant,
            `${v.throughput_gbit_s} (${v.throughput_samples_gbit_s.join(", ")})`,
            `${v.paired_vs_none_pct} [${v.paired_p25_pct}–${v.paired_p75_pct}] / ${v.throughput_vs_none_pct}`,
            v.rtt_p50_us === null ? "—" : `${v.rtt_p50_us} / ${v.rtt_p99_us}`,
            v.blocks_unlisted_destination === null ? "n/a" : v.blocks_unlisted_destination ? "yes" : "NO",
          ]),
        );
      }
    }
    out.push("", "Rules: " + tp.profiles[0]!.variants.map((v) => `${v.variant}: ${v.rules}`).join("; ") + ".");
  }
  const ins = r.inserts;
  if (ins) {
    out.push(
      "",
      "### 3. Policy updates through KernelFilter → loader → kernel vs bpftool",
      "",
      row(["operation", "figure"]),
      row(["---", "---:"]),
      row([`IPC floor: a COUNTERS request round trip (no map write; ${ins.counters_round_trip.count} sequential)`, `p50 ${ins.counters_round_trip.p50_us} µs, p99 ${ins.counters_round_trip.p99_us} µs`]),
      row([`single insert round trip (${ins.single_insert.count} sequential upserts of one /32)`, `p50 ${ins.single_insert.p50_us} µs, p99 ${ins.single_insert.p99_us} µs, mean ${ins.single_insert.mean_us} µs`]),
      row([`batched insert, ${ins.batch_insert_hosts.entries_per_batch} /32 per upsert (${ins.batch_insert_hosts.batches} batches)`, `median ${ins.batch_insert_hosts.per_entry_us} µs/entry, best ${ins.batch_insert_hosts.best_per_entry_us} (batches ${ins.batch_insert_hosts.batch_ms.join(", ")} ms; encoding the frame in TS alone ${ins.batch_insert_hosts.encode_ms} ms)`]),
      row([`batched insert, ${ins.batch_insert_prefixes.entries_per_batch} prefixes per upsert (${ins.batch_insert_prefixes.batches} batches)`, `median ${ins.batch_insert_prefixes.per_entry_us} µs/entry, best ${ins.batch_insert_prefixes.best_per_entry_us} (batches ${ins.batch_insert_prefixes.batch_ms.join(", ")} ms; encoding the frame in TS alone ${ins.batch_insert_prefixes.encode_ms} ms)`]),
      row([`atomic replace, ${ins.replace_10k.entries} entries (${ins.replace_10k.runs} runs, ${ins.replace_10k.spacing_ms} ms apart)`, `p50 ${ins.replace_10k.p50_ms} ms, min ${ins.replace_10k.min_ms}, max ${ins.replace_10k.max_ms} ms`]),
      row([`atomic replace, ${ins.replace_10k_hosts.entries} /32 entries only (${ins.replace_10k_hosts.runs} runs)`, `p50 ${ins.replace_10k_hosts.p50_ms} ms, min ${ins.replace_10k_hosts.min_ms}, max ${ins.replace_10k_hosts.max_ms} ms`]),
      row([`diagnostic: creating one 262144-bucket exact hash (${ins.replace_breakdown.create_inner_hash_ms.length}×)`, `p50 ${ins.replace_breakdown.create_inner_hash_p50_ms} ms`]),
      row([`diagnostic: installing an inner map into an ARRAY_OF_MAPS slot from user space`, `p50 ${ins.replace_breakdown.install_outer_slot_p50_ms} ms`]),
      row([
        "diagnostic: the same 10k entries published by a C program into map-in-map double buffers, by creating 4 maps + fill + install + flip vs by filling the installed empty inactive maps + flip",
        `p50 ${ins.replace_strategies.fresh_p50_ms} ms vs ${ins.replace_strategies.in_place_p50_ms} ms (of which hash fill ${ins.replace_strategies.in_place_hash_fill_p50_ms} ms, LPM fill ${ins.replace_strategies.in_place_lpm_fill_p50_ms} ms)`,
      ]),
      row([`\`bpftool map update\`, one process per entry (${ins.bpftool_process_per_update.count} updates)`, `${ins.bpftool_process_per_update.per_entry_ms} ms/entry (p50 ${ins.bpftool_process_per_update.p50_ms}, p99 ${ins.bpftool_process_per_update.p99_ms} ms)`]),
      row([`\`bpftool batch file\` (${ins.bpftool_batch.count} updates in one process)`, `${ins.bpftool_batch.per_entry_us} µs/entry (${ins.bpftool_batch.total_ms} ms total)`]),
    );
  }
  out.push("", "Tools: " + Object.entries(r.tools).map(([k, v]) => `${k}: ${v || "?"}`).join("; ") + ".");
  return out.join("\n");
}
