import { sh } from "../../test/helpers/sandbox.js";

/** Typed wrapper over the prog-run helper (bench/datapath/prog-run.c). */

export interface ProgRunResult {
  readonly prog: string;
  readonly pkt: string;
  readonly retval: number;
  /** Kernel-reported average ns per run, one per round. */
  readonly ns: readonly number[];
  /** Wall-clock ns per run (syscall time / repeat), one per round. */
  readonly wall: readonly number[];
}

export async function loadBaseline(progRun: string, obj: string, pin: string, entriesFile?: string): Promise<number> {
  const args = ["load", obj, pin, ...(entriesFile ? [entriesFile] : [])];
  const r = await sh(progRun, args, { timeoutMs: 120_000 });
  const parsed = JSON.parse(r.stdout) as { entries: number };
  return parsed.entries;
}

export async function testRun(
  progRun: string,
  repeat: number,
  rounds: number,
  packets: ReadonlyMap<string, string>,
  progs: ReadonlyMap<string, string>,
  timeoutMs: number,
): Promise<ProgRunResult[]> {
  const args = ["run", String(repeat), String(rounds)];
  for (const [name, hex] of packets) args.push(`${name}=${hex}`);
  args.push("--");
  for (const [name, pin] of progs) args.push(`${name}=${pin}`);
  const r = await sh(progRun, args, { timeoutMs });
  return (JSON.parse(r.stdout) as { results: ProgRunResult[] }).results;
}
