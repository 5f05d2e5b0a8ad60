/** The datapath benchmark's results file (run.ts writes it, report.ts renders it). */
import type { machineInfo } from "../lib/machine.js";
import type { PerPacketResult } from "./per-packet.js";
import type { ThroughputResult } from "./throughput.js";
import type { InsertResult } from "./inserts.js";
import type { TargetCheck } from "./targets.js";

export interface DatapathResults {
  readonly benchmark: "datapath";
  readonly machine: ReturnType<typeof machineInfo>;
  readonly tools: Record<string, string>;
  readonly units: Record<string, string>;
  readonly quick: boolean;
  readonly duration_s: number;
  readonly loadavg1_end: number;
  readonly per_packet?: PerPacketResult;
  readonly throughput?: ThroughputResult;
  readonly inserts?: InsertResult;
  readonly targets: TargetCheck[];
}
