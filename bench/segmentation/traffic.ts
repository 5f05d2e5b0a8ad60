/**
 * Drives bench/segmentation's traffic tool (segclient.c, built by `make -C bench/segmentation`):
 * measured round trips on 127.0.0.1 as the test user inside a cgroup, and the steady stream that
 * counts what is lost while rules are re-applied. Every run is bounded in time.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { withTimeout } from "../lib/time-limit.js";

export type RttMode = "udp-rtt" | "udp-new" | "tcp-new";
export const RTT_MODES: readonly RttMode[] = ["udp-rtt", "udp-new", "tcp-new"];

export interface RoundResult {
  readonly mode: RttMode;
  readonly ok: number;
  readonly failed: number;
  readonly p50_ns: number;
  readonly p99_ns: number;
  readonly mean_ns: number;
  readonly cpu_ns_per_op: number;
}

export interface StreamResult {
  readonly persistent: { readonly sent: number; readonly lost: number };
  readonly fresh: { readonly sent: number; readonly lost: number };
}

export interface Client {
  readonly port: number;
  readonly uid: number;
  readonly gid: number;
}

export const segclientPath = (): string => path.join(projectRoot(), "bench", "segmentation", "build", "segclient");

function args(c: Client, cgroup: string): string[] {
  return ["--port", String(c.port), "--uid", String(c.uid), "--gid", String(c.gid), "--cgroup", cgroup];
}

async function collect(child: ChildProcess): Promise<string[]> {
  let out = "";
  let err = "";
  child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  if (code !== 0) throw new Error(`segclient failed (${code}): ${err.trim()}`);
  return out.split("\n").filter((l) => l.startsWith("{"));
}

/** One round of `count` measured operations in `mode`, as the test user in `cgroup`. */
export async function measureRound(c: Client, cgroup: string, mode: RttMode, count: number): Promise<RoundResult> {
  const child = spawn(segclientPath(), [mode, "--count", String(count), "--rounds", "1", "--max-ms", "60000", ...args(c, cgroup)], { stdio: ["ignore", "pipe", "pipe"] });
  const lines = await withTimeout(`segclient ${mode}`, 70_000, collect(child)).catch((e: unknown) => {
    child.kill("SIGKILL");
    throw e;
  });
  if (lines.length !== 1) throw new Error(`segclient ${mode}: expected one result line, got ${lines.length}`);
  return JSON.parse(lines[0]!) as RoundResult;
}

/** Starts the steady stream (one round trip every `intervalUs` on a persistent and on a fresh socket); `stop()` ends it. */
export function startStream(c: Client, cgroup: string, intervalUs: number, maxMs: number): { stop: () => Promise<StreamResult> } {
  const child = spawn(segclientPath(), ["stream", "--interval-us", String(intervalUs), "--max-ms", String(maxMs), ...args(c, cgroup)], { stdio: ["pipe", "pipe", "pipe"] });
  const done = collect(child);
  return {
    async stop() {
      child.stdin!.end();
      const lines = await withTimeout("segclient stream", 10_000, done).catch((e: unknown) => {
        child.kill("SIGKILL");
        throw e;
      });
      const r = JSON.parse(lines.at(-1) ?? "{}") as Partial<StreamResult>;
      if (r.persistent === undefined || r.fresh === undefined) throw new Error("segclient stream printed no result");
      return r as StreamResult;
    },
  };
}
