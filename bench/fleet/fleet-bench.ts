/**
 * Fleet control-plane benchmark (issue 16). Usage (root, after scripts/bootstrap.sh):
 *   flock /tmp/netfence-bench.lock node dist/bench/fleet/fleet-bench.js [--daemons 1000] [--attachments 3] [--changes 5] [--out bench/results/fleet.json]
 *
 * A throwaway PostgreSQL (fsync on, pg_stat_statements), three `netfence-cp --database` replica
 * processes, N simulated daemons (test/helpers/sim-daemons.ts: the real protocol, one process):
 * 1. change committed → every attachment's BulkUpdate received (p50/p99 over all attachments of
 *    all changes), the PUT's own time, database statements per change (pg_stat_statements),
 *    replica CPU during the changes and RSS per 1,000 daemons held;
 * 2. resync: every daemon on one replica, kill -9 it, time until every attachment got its
 *    reconcile BulkUpdate from the survivors;
 * 3. beside it the YAML mode: one `netfence-cp --policy` process, the same daemons, the same change
 *    written to the file (includes the 200 ms file-watch debounce).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import postgres from "postgres";
import { startPostgres, freePort } from "../../test/helpers/postgres.js";
import { FleetReplica } from "../../test/helpers/fleet.js";
import { SimFleet } from "../../test/helpers/sim-daemons.js";
import { NETFENCE_CP } from "../lib/binaries.js";
import { AdminClient } from "../../control-plane-example/src/fleet/admin-client.js";
import { migrate } from "../../control-plane-example/src/fleet/migrations.js";
import { loadAverage, machineRecord, writeJsonFile } from "../lib/run-record.js";
import { percentile, round } from "../lib/stats.js";

interface Args { daemons: number; attachments: number; changes: number; out: string }

function parseArgs(argv: readonly string[]): Args {
  const a: Args = { daemons: 1000, attachments: 3, changes: 5, out: "bench/results/fleet.json" };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i]!, v = argv[i + 1];
    if (v === undefined) throw new Error(`${k} needs a value`);
    if (k === "--daemons") a.daemons = Number(v);
    else if (k === "--attachments") a.attachments = Number(v);
    else if (k === "--changes") a.changes = Number(v);
    else if (k === "--out") a.out = v;
    else throw new Error(`unknown option ${k}`);
  }
  return a;
}

const CLK_TCK = 100;
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : 0;
}

async function until(pred: () => boolean, what: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Per attachment: ms from t0 to its first BulkUpdate after t0 (all must have one). */
function latencies(sims: SimFleet, t0: number): number[] {
  return sims.attachments().map((a) => a.daemon.bulkAt.get(a.id)! - t0);
}
const allSince = (sims: SimFleet, t0: number) => () => sims.attachments().every((a) => (a.daemon.bulkAt.get(a.id) ?? 0) > t0);
const dist = (xs: readonly number[]) => ({ p50: round(percentile(xs, 50), 1), p99: round(percentile(xs, 99), 1), max: round(Math.max(...xs), 1), n: xs.length, unit: "ms" });

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const load0 = loadAverage();
  const total = args.daemons * args.attachments;
  const labels = () => ({ sim: "yes" });
  const pg = await startPostgres({ settings: { shared_preload_libraries: "pg_stat_statements", fsync: "on", synchronous_commit: "on", full_page_writes: "on" } });
  const sql = postgres(pg.url, { max: 2, onnotice: () => undefined });
  const replicas = ["r0", "r1", "r2"].map((n) => new FleetReplica(n, pg.url, NETFENCE_CP));
  const dir = mkdtempSync(path.join(os.tmpdir(), "nf-fleet-bench-"));
  const result: Record<string, unknown> = {};
  try {
    await migrate(sql);
    await sql`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`;
    await Promise.all(replicas.map((r) => r.start(20_000, "warn")));
    const admin = new AdminClient(replicas[2]!.adminUrl);
    let version = 0;
    const put = async (i: number) => {
      const r = await admin.send<{ version: number }>("PUT", "/v1/policies/sim", {
        priority: 10, match: { sim: "yes" }, mode: "allowlist", allow: [`10.${i}.0.0/16`, "169.254.0.0/16"], dns: { mode: "allowlist", allow: ["*.example.com"] },
        expectedVersion: version, author: "bench", reason: `change ${i}`,
      });
      version = r.version;
    };
    await put(1);

    // 1. Change fan-out through three replicas.
    const rss0 = replicas.map((r) => rssMiB(r.pid!));
    let sims = new SimFleet(replicas.map((r) => r.address));
    const c0 = performance.now();
    sims.add(args.daemons, args.attachments, labels);
    await until(() => sims.attachments().every((a) => a.daemon.versions.get(a.id) === `sim@${version}`), "all attachments on the first version", 120_000);
    const connectMs = performance.now() - c0;
    await new Promise((r) => setTimeout(r, 1000));
    const cpu0 = replicas.map((r) => cpuSeconds(r.pid!));
    const lat: number[] = [];
    const putMs: number[] = [];
    const statements: number[] = [];
    const perQuery = new Map<string, number>();
    for (let i = 0; i < args.changes; i++) {
      await sql`SELECT pg_stat_statements_reset()`;
      const t0 = performance.now();
      await put(i + 2);
      putMs.push(performance.now() - t0);
      await until(allSince(sims, t0), `change ${i} on every attachment`, 60_000);
      lat.push(...latencies(sims, t0));
      await new Promise((r) => setTimeout(r, 500)); // the replicas' batched ack writes
      const rows = await sql<{ query: string; calls: string }[]>`SELECT query, calls FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'`;
      statements.push(rows.reduce((a, r) => a + Number(r.calls), 0));
      for (const r of rows) perQuery.set(r.query.replace(/\s+/g, " ").slice(0, 90), (perQuery.get(r.query.replace(/\s+/g, " ").slice(0, 90)) ?? 0) + Number(r.calls));
    }
    const cpu1 = replicas.map((r) => cpuSeconds(r.pid!));
    const held = await admin.get<{ replicas: Array<{ replicaId: string; daemons: number }> }>("/v1/status");
    result["fleet"] = {
      what: `3 netfence-cp replicas on PostgreSQL 15 (fsync on), ${args.daemons} simulated daemons × ${args.attachments} attachments spread over them`,
      attachments: total,
      allConnectedAndOnVersionMs: Math.round(connectMs),
      changeCommittedToAllAppliedMs: dist(lat),
      putRoundTripMs: dist(putMs),
      dbStatementsPerChange: { median: percentile(statements, 50), each: statements, note: "all statements in pg_stat_statements during one change (BEGIN/COMMIT not counted); includes the replicas' 5 s heartbeat and 10 s revision poll when they fell in the window" },
      statementsByQueryOverAllChanges: Object.fromEntries([...perQuery.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12)),
      replicas: replicas.map((r, i) => {
        const daemons = held.replicas.find((h) => h.replicaId === r.name)?.daemons ?? 0;
        const rss = rssMiB(r.pid!);
        return {
          replica: r.name, daemons, cpuSecondsPerChange: round((cpu1[i]! - cpu0[i]!) / args.changes, 3),
          rssMiBIdle: round(rss0[i]!, 1), rssMiB: round(rss, 1),
          // What the daemons add over the idle replica, scaled to 1,000 daemons (3 attachments each).
          rssMiBAddedPer1000Daemons: daemons ? round((rss - rss0[i]!) / daemons * 1000, 1) : null,
        };
      }),
    };
    console.log(JSON.stringify(result["fleet"], null, 2));

    // 2. Resync: every daemon on r0, then r0 dies.
    sims.stop();
    await new Promise((r) => setTimeout(r, 1000));
    sims = new SimFleet(replicas.map((r) => r.address));
    sims.add(args.daemons, args.attachments, labels, () => 0);
    await until(() => sims.daemons.every((d) => d.synced) && sims.attachments().every((a) => a.daemon.versions.get(a.id) === `sim@${version}`), "all daemons on r0", 120_000);
    await new Promise((r) => setTimeout(r, 1000));
    const tKill = performance.now();
    await replicas[0]!.kill9();
    await until(allSince(sims, tKill), "every attachment reconciled by a survivor", 120_000);
    const resync = latencies(sims, tKill);
    result["resync"] = {
      what: `${args.daemons} daemons / ${total} attachments all on one replica; kill -9; until every attachment got its reconcile BulkUpdate from the other two (daemon-side reconnect delay 50-300 ms included)`,
      attachments: total,
      allResyncedMs: round(Math.max(...resync), 0),
      perAttachmentMs: dist(resync),
    };
    console.log(JSON.stringify(result["resync"], null, 2));
    sims.stop();
    for (const r of replicas) await r.kill9();

    // 3. The YAML mode, the same daemons and change.
    const policy = path.join(dir, "policy.yaml");
    const yaml = (i: number) => `defaults: {mode: block-all}\nrules:\n  - name: sim\n    match: {sim: "yes"}\n    mode: allowlist\n    allow: [10.${i}.0.0/16, 169.254.0.0/16]\n    dns: {mode: allowlist, allow: ["*.example.com"]}\n`;
    writeFileSync(policy, yaml(1));
    const port = await freePort();
    const cp = spawn(process.execPath, [NETFENCE_CP, "--listen", `127.0.0.1:${port}`, "--policy", policy, "--log-level", "warn"], { stdio: ["ignore", "ignore", "inherit"] });
    try {
      sims = new SimFleet([`127.0.0.1:${port}`]);
      sims.add(args.daemons, args.attachments, labels);
      await until(() => sims.daemons.every((d) => d.synced) && sims.attachments().every((a) => a.daemon.bulkAt.has(a.id)), "YAML mode: all reconciled", 120_000);
      await new Promise((r) => setTimeout(r, 1000));
      const ycpu0 = cpuSeconds(cp.pid!);
      const yrss = rssMiB(cp.pid!);
      const ylat: number[] = [];
      for (let i = 0; i < args.changes; i++) {
        const t0 = performance.now();
        writeFileSync(policy, yaml(i + 2));
        await until(allSince(sims, t0), `YAML change ${i}`, 60_000);
        ylat.push(...latencies(sims, t0));
        await new Promise((r) => setTimeout(r, 500));
      }
      result["yamlMode"] = {
        what: `one netfence-cp --policy process, the same ${args.daemons} × ${args.attachments} simulated attachments, the same change written to the file`,
        changeWrittenToAllAppliedMs: dist(ylat),
        note: "includes the 200 ms file-watch debounce",
        cpuSecondsPerChange: round((cpuSeconds(cp.pid!) - ycpu0) / args.changes, 3),
        rssMiBWithTheDaemons: round(yrss, 1),
      };
      console.log(JSON.stringify(result["yamlMode"], null, 2));
      sims.stop();
    } finally {
      cp.kill("SIGKILL");
    }
    await writeJsonFile(args.out, {
      command: `flock /tmp/netfence-bench.lock node dist/bench/fleet/fleet-bench.js ${process.argv.slice(2).join(" ")}`.trim(),
      date: new Date().toISOString(),
      machine: await machineRecord(load0, "2 vCPUs shared with other engineers' kernel tests; the simulated daemons run in the bench process on the same cores"),
      ...result,
    });
  } finally {
    for (const r of replicas) await r.cleanup();
    await sql.end({ timeout: 5 });
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
// gRPC channels and timers of the simulated daemons may linger a moment; the results are written.
process.exit(0);
