import { spawn } from "node:child_process";

/** Runs dnsperf (bounded by -l and optionally -n) and parses its summary and, with -v, per-query latencies. */

export interface DnsperfResult {
  readonly sent: number;
  readonly completed: number;
  readonly lost: number;
  readonly rcodes: Record<string, number>;
  readonly runTimeS: number;
  readonly qps: number;
  readonly avgLatencyUs: number;
  readonly minLatencyUs: number;
  readonly maxLatencyUs: number;
  /** Per-query latencies (µs), only when run with verbose. */
  readonly latenciesUs: number[];
}

export interface DnsperfOptions {
  readonly server: string;
  readonly port: number;
  readonly dataFile: string;
  readonly seconds: number;
  /** Stop after one pass through the data file (each name queried once). */
  readonly onePass?: boolean;
  readonly clients?: number;
  readonly outstanding?: number;
  readonly verbose?: boolean;
  readonly timeoutS?: number;
  /** dnsperf -Q: cap on queries per second */
  readonly maxQps?: number;
}

function num(text: string, re: RegExp): number {
  const m = re.exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

export async function runDnsperf(o: DnsperfOptions): Promise<DnsperfResult> {
  const args = [
    "-f", "inet", "-s", o.server, "-p", String(o.port), "-d", o.dataFile, "-l", String(o.seconds),
    "-c", String(o.clients ?? 4), "-q", String(o.outstanding ?? 100), "-t", String(o.timeoutS ?? 2), "-T", "1",
  ];
  if (o.onePass) args.push("-n", "1");
  if (o.verbose) args.push("-v");
  if (o.maxQps !== undefined) args.push("-Q", String(o.maxQps));
  const child = spawn("dnsperf", args, { stdio: ["ignore", "pipe", "pipe"] });
  const latencies: number[] = [];
  let text = "";
  let partial = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    const lines = (partial + chunk).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      if (line.startsWith("> ")) {
        const seconds = Number(line.slice(line.lastIndexOf(" ") + 1));
        if (Number.isFinite(seconds)) latencies.push(seconds * 1e6);
      } else {
        text += line + "\n";
      }
    }
  });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (c: string) => (stderr += c));
  const killer = setTimeout(() => child.kill("SIGKILL"), (o.seconds + 30) * 1000);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  clearTimeout(killer);
  if (code !== 0) throw new Error(`dnsperf exited with ${code}: ${stderr.trim()} ${text.slice(-500)}`);
  if (!/Queries completed:\s+[1-9]/.test(text)) throw new Error(`dnsperf completed no queries: dnsperf ${args.join(" ")}\n${text}${stderr}`);
  const rcodes: Record<string, number> = {};
  const rc = /Response codes:\s+(.*)/.exec(text);
  if (rc) for (const m of rc[1]!.matchAll(/([A-Z]+) (\d+)/g)) rcodes[m[1]!] = Number(m[2]);
  return {
    sent: num(text, /Queries sent:\s+(\d+)/),
    completed: num(text, /Queries completed:\s+(\d+)/),
    lost: num(text, /Queries lost:\s+(\d+)/),
    rcodes,
    runTimeS: num(text, /Run time \(s\):\s+([\d.]+)/),
    qps: num(text, /Queries per second:\s+([\d.]+)/),
    avgLatencyUs: num(text, /Average Latency \(s\):\s+([\d.]+)/) * 1e6,
    minLatencyUs: num(text, /min ([\d.]+)/) * 1e6,
    maxLatencyUs: num(text, /max ([\d.]+)/) * 1e6,
    latenciesUs: latencies,
  };
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}
