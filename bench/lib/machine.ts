import { readFileSync } from "node:fs";
import os from "node:os";

export interface MachineInfo {
  readonly nproc: number;
  readonly kernel: string;
  readonly cpuModel: string;
  readonly memTotalMiB: number;
  readonly node: string;
  readonly date: string;
  /** 1-minute load average when the benchmark started (other work on the machine skews figures). */
  readonly loadavg1: number;
}

/** The machine a benchmark ran on, recorded with every result file. */
export function machineInfo(): MachineInfo {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? "unknown";
  return {
    nproc: os.availableParallelism(),
    kernel: os.release(),
    cpuModel: model,
    memTotalMiB: Math.round(os.totalmem() / 1024 / 1024),
    node: process.version,
    date: new Date().toISOString(),
    loadavg1: Math.round(os.loadavg()[0]! * 100) / 100,
  };
}
