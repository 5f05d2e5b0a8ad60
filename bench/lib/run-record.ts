import { mkdir, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

/**
 * What the namespaced benchmarks record about the run beside their figures: the machine and its
 * load at the start and at the end (a shared VM: other work skews the figures), and the JSON file.
 */

const LOAD_UNIT = "runnable tasks (1/5/15 min)";

/** The load average now (1/5/15 min), to 2 decimals. */
export function loadAverage(): number[] {
  return os.loadavg().map((v) => Math.round(v * 100) / 100);
}

/**
 * The `machine` block: CPU count and model, kernel, Node, then `extra` (tool versions), the load
 * average at `loadAtStart` and now, and `note` (what shared the cores).
 */
export async function machineRecord(loadAtStart: number[], note: string, extra: Readonly<Record<string, string>> = {}) {
  const cpu = /model name\s*:\s*(.*)/.exec(await readFile("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown";
  return {
    nproc: os.availableParallelism(), cpu, kernel: os.release(), node: process.version,
    ...extra,
    load_average_at_start: { value: loadAtStart, unit: LOAD_UNIT },
    load_average_at_end: { value: loadAverage(), unit: LOAD_UNIT },
    note,
  };
}

/** Writes `value` as indented JSON to `file` (its directory created). */
export async function writeJsonFile(file: string, value: unknown): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify(value, null, 2) + "\n");
}
