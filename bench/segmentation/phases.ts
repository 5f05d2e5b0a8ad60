/**
 * The three measurements of bench/segmentation, each over every engine in one run:
 *   applyPhase    time to apply N rules (replace what is in force), p50/p99 over runs
 *   packetPhase   round-trip latency and CPU per round trip on 127.0.0.1 with N rules in force,
 *                 engines interleaved round by round (load drift hits all alike), and each minus
 *                 the same round's no-filter figure
 *   dropPhase     round trips lost while 20 applies run back to back under a steady stream
 */
import { percentile } from "../lib/stats.js";
import { Deadline } from "../lib/time-limit.js";
import { clearBaselines, type Engine } from "./engines.js";
import type { Variant } from "./rulesets.js";
import { RTT_MODES, measureRound, startStream, type Client, type RoundResult, type RttMode } from "./traffic.js";

const r3 = (v: number) => Math.round(v * 1000) / 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Stat {
  readonly p50: number;
  readonly p99: number;
  readonly n: number;
  readonly samples: number[];
}

export function stat(v: readonly number[]): Stat {
  return { p50: r3(percentile(v, 50)), p99: r3(percentile(v, 99)), n: v.length, samples: v.map(r3) };
}

/** Where an engine's clients run: the cgroup with the netfence attachment or the plain one. */
export interface Placed {
  readonly engine: Engine;
  readonly cgroup: string;
  /** Largest N this engine is asked to apply in the apply and drop phases (the seed's `iptables -A` loop at 10,000 takes minutes). */
  readonly maxRules?: number;
  /** Runs of the apply phase at N above this get one run only (bounded). */
  readonly fewRunsAbove?: number;
}

export type Log = (m: string) => void;

export async function applyPhase(engines: readonly Placed[], sizes: readonly number[], runs: number, log: Log, limitMs: number) {
  const out: Record<string, Record<string, Stat | { error: string }>> = {};
  for (const n of sizes) {
    const row: Record<string, Stat | { error: string }> = (out[String(n)] = {});
    for (const p of engines) {
      if (p.engine.name === "no-filter") continue;
      if (p.maxRules !== undefined && n > p.maxRules) continue;
      const k = p.fewRunsAbove !== undefined && n > p.fewRunsAbove ? 1 : runs;
      try {
        await clearBaselines();
        const deadline = new Deadline(limitMs);
        const ms: number[] = [];
        await p.engine.apply(n, "a"); // what is in force before: the same size (an apply replaces it)
        for (let i = 0; i < k && !deadline.expired(); i++) ms.push(await p.engine.apply(n, i % 2 === 0 ? "b" : "a"));
        const st = stat(ms);
        row[p.engine.name] = st;
        log(`apply ${p.engine.name} n=${n}: p50 ${st.p50} ms, p99 ${st.p99} ms over ${ms.length}`);
      } catch (err) {
        row[p.engine.name] = { error: (err as Error).message.slice(0, 300) };
        log(`apply ${p.engine.name} n=${n}: ${(err as Error).message.slice(0, 200)}`);
      }
    }
  }
  await clearBaselines();
  return out;
}

interface ModeFigures {
  rtt_p50_us: Stat;
  rtt_p99_us: Stat;
  cpu_us_per_op: Stat;
  /** This round's p50 minus the same round's no-filter p50 (µs). */
  added_p50_us?: Stat;
  added_cpu_us_per_op?: Stat;
  failed: number;
}

export async function packetPhase(engines: readonly Placed[], sizes: readonly number[], rounds: number, count: number, client: Client, log: Log) {
  const out: Record<string, Record<RttMode, Record<string, ModeFigures>>> = {};
  for (const n of sizes) {
    const raw = new Map<string, RoundResult[]>(); // `${engine}/${mode}` → rounds
    for (let r = 0; r < rounds; r++) {
      // Rotate the order each round: no engine always runs first or last.
      const order = engines.map((_, i) => engines[(i + r) % engines.length]!);
      for (const p of order) {
        await clearBaselines();
        await p.engine.apply(n, "a");
        for (const mode of RTT_MODES) {
          const res = await measureRound(client, p.cgroup, mode, count);
          const k = `${p.engine.name}/${mode}`;
          raw.set(k, [...(raw.get(k) ?? []), res]);
        }
      }
      log(`per-packet n=${n}: round ${r + 1}/${rounds} done`);
    }
    await clearBaselines();
    const byMode = {} as Record<RttMode, Record<string, ModeFigures>>;
    for (const mode of RTT_MODES) {
      const base = raw.get(`no-filter/${mode}`) ?? [];
      const row: Record<string, ModeFigures> = (byMode[mode] = {});
      for (const p of engines) {
        const rs = raw.get(`${p.engine.name}/${mode}`) ?? [];
        const f: ModeFigures = {
          rtt_p50_us: stat(rs.map((x) => x.p50_ns / 1000)),
          rtt_p99_us: stat(rs.map((x) => x.p99_ns / 1000)),
          cpu_us_per_op: stat(rs.map((x) => x.cpu_ns_per_op / 1000)),
          failed: rs.reduce((a, x) => a + x.failed, 0),
        };
        if (p.engine.name !== "no-filter" && base.length === rs.length) {
          f.added_p50_us = stat(rs.map((x, i) => (x.p50_ns - base[i]!.p50_ns) / 1000));
          f.added_cpu_us_per_op = stat(rs.map((x, i) => (x.cpu_ns_per_op - base[i]!.cpu_ns_per_op) / 1000));
        }
        row[p.engine.name] = f;
      }
    }
    out[String(n)] = byMode;
  }
  return out;
}

/**
 * The rule sets enforce what they claim: with each engine's N rules in force, a UDP round trip to the
 * bench's port as the test user passes and as `otherUid` (no rule of its own) does not — except for
 * netfence-unscoped, whose /32 entries cannot name a user (reported, not hidden).
 */
export async function enforcementCheck(engines: readonly Placed[], n: number, client: Client, otherUid: number, log: Log) {
  const out: Record<string, { test_user_passes: boolean; other_user_blocked: boolean }> = {};
  for (const p of engines) {
    await clearBaselines();
    await p.engine.apply(n, "a");
    const mine = await measureRound(client, p.cgroup, "udp-rtt", 20);
    const other = await measureRound({ ...client, uid: otherUid, gid: otherUid }, p.cgroup, "udp-rtt", 20);
    out[p.engine.name] = { test_user_passes: mine.failed === 0, other_user_blocked: other.ok === 0 };
    log(`enforcement ${p.engine.name} n=${n}: test user ${mine.ok}/20 answered, uid ${otherUid} ${other.ok}/20 answered`);
  }
  await clearBaselines();
  return out;
}

export interface DropRow {
  applies: number;
  apply_ms: Stat;
  persistent: { sent: number; lost: number };
  fresh: { sent: number; lost: number };
}

export async function dropPhase(engines: readonly Placed[], sizes: readonly number[], applies: number, intervalUs: number, client: Client, log: Log) {
  const out: Record<string, Record<string, DropRow | { error: string }>> = {};
  for (const n of sizes) {
    const row: Record<string, DropRow | { error: string }> = (out[String(n)] = {});
    for (const p of engines) {
      if (p.maxRules !== undefined && n > p.maxRules) continue;
      try {
        await clearBaselines();
        await p.engine.apply(n, "a");
        const stream = startStream(client, p.cgroup, intervalUs, 15 * 60_000);
        await sleep(300);
        const ms: number[] = [];
        try {
          for (let i = 0; i < applies; i++) ms.push(await p.engine.apply(n, (i % 2 === 0 ? "b" : "a") as Variant));
        } finally {
          await sleep(300);
          const s = await stream.stop();
          row[p.engine.name] = { applies: ms.length, apply_ms: stat(ms.length ? ms : [0]), persistent: s.persistent, fresh: s.fresh };
        }
        const d = row[p.engine.name] as DropRow;
        log(`drops ${p.engine.name} n=${n}: lost ${d.persistent.lost}/${d.persistent.sent} persistent, ${d.fresh.lost}/${d.fresh.sent} fresh`);
      } catch (err) {
        row[p.engine.name] = { error: (err as Error).message.slice(0, 300) };
        log(`drops ${p.engine.name} n=${n}: ${(err as Error).message.slice(0, 200)}`);
      }
    }
  }
  await clearBaselines();
  return out;
}
