/**
 * Issue 13: what the loader's pool of verified instances (bpf/loader/pool.c) takes off an attach.
 * Two KernelFilters, each with its own loader child — one with the pool, one started with
 * NETFENCE_LOADER_POOL=0 — attach the same target kinds with a one-entry policy (the
 * SubscribedAck), interleaved attach by attach, 100 ms apart (a control plane's pace, which lets
 * the pool's worker rebuild its spare), each attachment detached after it is timed; beside them,
 * in the same rounds, `bpftool prog load` of the same object (the verifier's share alone). p50/p99.
 *
 *   flock /tmp/netfence-bench.lock node dist/bench/datapath/attach-pool.js [--count 30]
 * Writes bench/results/datapath-attach-pool.json. Never asserts anything about time.
 */
import { rm } from "node:fs/promises";
import path from "node:path";
import { randomBytes } from "node:crypto";
import pino from "pino";
import type { AttachSpec, FilterPolicy } from "../../daemon/src/datapath/filter.js";
import { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { Sandbox, sh, requireKernel } from "../../test/helpers/sandbox.js";
import { parseCidr } from "@netfence/proto/parse";
import { loadAverage, machineRecord, writeJsonFile } from "../lib/run-record.js";
import { percentile } from "../lib/stats.js";

const POLICY: FilterPolicy = { mode: "allowlist", audit: false, entries: [{ cidr: parseCidr("192.0.2.1/32"), allow: true, deny: false, expiresAtMs: null }] };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const r2 = (v: number) => Math.round(v * 100) / 100;
const stat = (v: number[]) => ({ count: v.length, p50_ms: r2(percentile(v, 50)), p99_ms: r2(percentile(v, 99)), min_ms: r2(Math.min(...v)), max_ms: r2(Math.max(...v)) });

async function main(): Promise<void> {
  const loadAtStart = loadAverage();
  const root = projectRoot();
  const i = process.argv.indexOf("--count");
  const count = i === -1 ? 30 : Number(process.argv[i + 1]);
  await requireKernel();
  const sb = await Sandbox.create("nfap");
  const pins = `/sys/fs/bpf/nfap-${randomBytes(4).toString("hex")}`;
  const filters: KernelFilter[] = [];
  try {
    const net = await sb.network();
    const cg = await sb.cgroup();
    const start = async (pool: boolean) => {
      process.env.NETFENCE_LOADER_POOL = pool ? "1" : "0";
      const f = await KernelFilter.start({ pinRoot: `${pins}-${pool ? "pool" : "nopool"}`, logger: pino({ level: "warn" }) });
      filters.push(f);
      return f;
    };
    const variants = { pool: await start(true), no_pool: await start(false) } as const;
    delete process.env.NETFENCE_LOADER_POOL;
    await sleep(500);
    const times: Record<string, number[]> = {};
    const note = (k: string, ms: number) => (times[k] ??= []).push(ms);
    const targets: Record<string, AttachSpec["target"]> = {
      tc: { kind: "interface", name: net.hostIf, direction: "ingress" },
      cgroup: { kind: "cgroup", path: cg },
    };
    const objects = { tc: "netfence_tc.bpf.o", cgroup: "netfence_cgroup.bpf.o" } as const;
    let slot = 1;
    for (let n = 0; n < count; n++) {
      for (const kind of ["tc", "cgroup"] as const) {
        for (const [name, f] of Object.entries(variants)) {
          const id = `ap-${name}-${kind}-${n}`.replace("_", "");
          const t0 = performance.now();
          await f.attach({ id, slot: slot++, target: targets[kind]!, dns: { ipv4: null, ipv6: null, port: 0 } }, POLICY);
          note(`${kind}_${name}`, performance.now() - t0);
          await f.detach(id);
          await sleep(100);
        }
        const pin = path.join(`${pins}-pool`, `bpftool-${kind}-${n}`);
        const t0 = performance.now();
        await sh("bpftool", ["prog", "load", path.join(root, "bpf", "prebuilt", objects[kind]), pin, ...(kind === "cgroup" ? ["type", "cgroup/skb"] : [])]);
        note(`${kind}_bpftool_prog_load`, performance.now() - t0);
        await rm(pin, { force: true });
        await sleep(100);
      }
    }
    await writeJsonFile(path.join(root, "bench", "results", "datapath-attach-pool.json"), {
      benchmark: "datapath-attach-pool (issue 13, kernel)",
      command: `flock /tmp/netfence-bench.lock node dist/bench/datapath/attach-pool.js --count ${count}`,
      what: "KernelFilter.attach (LOAD + REPLACE of a one-entry policy + LINK) with the loader's pool of verified instances vs without (NETFENCE_LOADER_POOL=0), interleaved, 100 ms apart; bpftool prog load of the same object in the same rounds",
      machine: await machineRecord(loadAtStart, "2 vCPUs shared with other engineers' tests; runs serialised by flock /tmp/netfence-bench.lock"),
      attach: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, stat(v)])),
    });
  } finally {
    for (const f of filters) {
      for (const id of await f.listPinned().catch(() => [])) await f.detach(id).catch(() => undefined);
      await f.close().catch(() => undefined);
    }
    await sb.cleanup();
    for (const s of ["pool", "nopool"]) await rm(`${pins}-${s}`, { recursive: true, force: true }).catch(() => undefined);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`attach-pool failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
