/**
 * Renders bench/segmentation's results as the Markdown tables of docs/benchmarks.md:
 *
 *   node dist/bench/segmentation/report.js [bench/results/segmentation.json]
 *
 * Apply time (p50 / p99 ms), per-round-trip figures (p50 round trip and added p50 over no-filter,
 * µs), and round trips lost during the applies. Reads the file only; measures nothing.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";

interface Stat { p50: number; p99: number; n: number }
interface Err { error: string }
interface Mode { rtt_p50_us: Stat; rtt_p99_us: Stat; cpu_us_per_op: Stat; added_p50_us?: Stat; failed: number }
interface Drop { applies: number; apply_ms: Stat; persistent: { sent: number; lost: number }; fresh: { sent: number; lost: number } }
interface Results {
  command: string;
  machine: { cpu: string; nproc: number; kernel: string; load_average_at_start: { value: number[] }; load_average_at_end: { value: number[] }; iptables?: string; nft?: string; netfence_layout?: string };
  policy: { netfence: string };
  apply_ms: Record<string, Record<string, Stat | Err>>;
  per_packet: Record<string, Record<string, Record<string, Mode>>>;
  drops: Record<string, Record<string, Drop | Err>>;
}

const isErr = (x: unknown): x is Err => typeof x === "object" && x !== null && "error" in x;
const f1 = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1));

export function render(r: Results): string {
  const out: string[] = [];
  const sizes = Object.keys(r.apply_ms);
  const engines = [...new Set(sizes.flatMap((n) => Object.keys(r.apply_ms[n]!)))];
  out.push(`Apply time, ms (p50 / p99; replacing a policy of the same size):`, "", `| engine | ${sizes.map((n) => `N = ${n}`).join(" | ")} |`, `|---|${sizes.map(() => "---:").join("|")}|`);
  for (const e of engines) {
    const cells = sizes.map((n) => {
      const s = r.apply_ms[n]![e];
      if (s === undefined) return "–";
      if (isErr(s)) return `> bound (${s.error.replace(/^iptables -A /, "")})`;
      return s.n === 1 ? `${f1(s.p50)} (1 run)` : `${f1(s.p50)} / ${f1(s.p99)}`;
    });
    out.push(`| ${e} | ${cells.join(" | ")} |`);
  }
  for (const n of Object.keys(r.per_packet)) {
    const modes = Object.keys(r.per_packet[n]!);
    const engs = Object.keys(r.per_packet[n]![modes[0]!]!);
    out.push("", `Per round trip on 127.0.0.1 with N = ${n} rules, µs: p50 round trip (added over no-filter, p50 over rounds) · p99:`, "");
    out.push(`| engine | ${modes.join(" | ")} |`, `|---|${modes.map(() => "---:").join("|")}|`);
    for (const e of engs) {
      const cells = modes.map((m) => {
        const x = r.per_packet[n]![m]![e]!;
        const added = x.added_p50_us === undefined ? "" : ` (${x.added_p50_us.p50 >= 0 ? "+" : ""}${f1(x.added_p50_us.p50)})`;
        return `${f1(x.rtt_p50_us.p50)}${added} · ${f1(x.rtt_p99_us.p50)}${x.failed ? ` · ${x.failed} failed` : ""}`;
      });
      out.push(`| ${e} | ${cells.join(" | ")} |`);
    }
  }
  const dsizes = Object.keys(r.drops);
  out.push("", "Round trips lost during the applies back to back (persistent socket · fresh socket per round trip):", "");
  out.push(`| engine | ${dsizes.map((n) => `N = ${n}`).join(" | ")} |`, `|---|${dsizes.map(() => "---").join("|")}|`);
  const dengines = [...new Set(dsizes.flatMap((n) => Object.keys(r.drops[n]!)))];
  for (const e of dengines) {
    const cells = dsizes.map((n) => {
      const d = r.drops[n]![e];
      if (d === undefined) return "–";
      if (isErr(d)) return `error: ${d.error.slice(0, 60)}`;
      return `${d.persistent.lost}/${d.persistent.sent} · ${d.fresh.lost}/${d.fresh.sent} (${d.applies} applies, p50 ${f1(d.apply_ms.p50)} ms)`;
    });
    out.push(`| ${e} | ${cells.join(" | ")} |`);
  }
  const m = r.machine;
  out.push("", `Machine: ${m.nproc} × ${m.cpu}, Linux ${m.kernel}, ${m.iptables ?? ""}, ${m.nft ?? ""}, Netfence layout ${m.netfence_layout ?? "?"}; load average ${m.load_average_at_start.value.join(" ")} at start, ${m.load_average_at_end.value.join(" ")} at end. Netfence policy: ${r.policy.netfence}.`);
  return out.join("\n") + "\n";
}

const file = path.resolve(process.argv[2] ?? path.join(projectRoot(), "bench", "results", "segmentation.json"));
process.stdout.write(render(JSON.parse(await readFile(file, "utf8")) as Results));
