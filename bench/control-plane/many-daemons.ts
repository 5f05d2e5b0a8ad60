/**
 * Control-plane benchmark, part 3: one netfence-cp process (the real binary, YAML policy) driving
 * N simulated daemon streams over the real protocol: time until all are synced and acked, the
 * netfence-cp CPU while every daemon heartbeats each second, and the fan-out time of a policy
 * reload to every attachment.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { ControlPlane, DaemonEventSchema, type ControlCommand, type DaemonEvent } from "@netfence/proto/control";
import { methodDefinition } from "@netfence/proto/grpc";
import { NETFENCE_CP } from "../lib/binaries.js";
import { r3, until } from "./bench-util.js";

const CONNECT = methodDefinition(ControlPlane.method.connect);

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14, 15 of stat)
}

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

const POLICY = (variant: number): string => `
defaults: {mode: block-all}
rules:
  - name: sim
    match: {sim: "yes"}
    mode: allowlist
    allow: [${Array.from({ length: 50 }, (_, i) => `10.${variant}.${i}.0/24`).join(", ")}]
    deny: [169.254.169.254]
    dns: {mode: allowlist, allow: ["*.example.com", "pypi.org"], upstreams: ["127.0.0.1:53"]}
`;

interface SimDaemon {
  call: grpc.ClientDuplexStream<DaemonEvent, ControlCommand>;
  synced: boolean;
  acked: boolean;
  bulk: number;
}

export async function manyDaemons(args: { readonly daemons: number; readonly heartbeatSeconds: number }): Promise<Record<string, unknown>> {
  const main = NETFENCE_CP;
  const dir = mkdtempSync(path.join(os.tmpdir(), "netfence-cp-bench-"));
  const policyPath = path.join(dir, "policy.yaml");
  writeFileSync(policyPath, POLICY(1));
  let cp: ChildProcess | null = null;
  const channels: grpc.Client[] = [];
  const sims: SimDaemon[] = [];
  try {
    cp = spawn(process.execPath, [main, "--listen", "127.0.0.1:0", "--policy", policyPath, "--log-level", "warn"], { stdio: ["ignore", "pipe", "inherit"] });
    const child = cp;
    // netfence-cp logs "netfence-cp serving" with the bound port at info; warn level hides it, so
    // ask the kernel which port the child listens on instead.
    const port = await findListeningPort(child.pid!, 15_000);
    for (let c = 0; c < 50; c++) channels.push(new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()));
    const cpu0 = cpuTicks(child.pid!);
    const t0 = performance.now();
    for (let i = 0; i < args.daemons; i++) {
      const call = channels[i % channels.length]!.makeBidiStreamRequest(CONNECT.path, CONNECT.requestSerialize, CONNECT.responseDeserialize, new grpc.Metadata(), {}) as grpc.ClientDuplexStream<DaemonEvent, ControlCommand>;
      const sim: SimDaemon = { call, synced: false, acked: false, bulk: 0 };
      call.on("data", (cmd: ControlCommand) => {
        const c = cmd.command.case;
        if (c === "syncAck") sim.synced = true;
        else if (c === "subscribedAck") sim.acked = true;
        else if (c === "bulkUpdate") sim.bulk++;
        // Behave like a Netfence daemon: confirm commands that carry a command_id.
        if (cmd.commandId !== "") call.write(create(DaemonEventSchema, { event: { case: "commandResult", value: { commandId: cmd.commandId, attachmentId: cmd.id, applied: true } } }));
      });
      call.on("error", () => undefined);
      const attachments = [0, 1].map((k) => ({ id: `sim${i}-${k}`, target: `veth${i}-${k}`, type: 1, mode: 2, dnsMode: 2, metadata: { sim: "yes" } }));
      call.write(create(DaemonEventSchema, { event: { case: "sync", value: { daemonId: `sim-${i}`, hostname: `host-${i}`, metadata: { rack: String(i % 40) }, attachments } } }));
      call.write(create(DaemonEventSchema, { event: { case: "subscribed", value: { id: `sim${i}-new`, target: `veth${i}-new`, type: 1, dnsAddress: "127.0.0.1:11000", metadata: { sim: "yes" } } } }));
      sims.push(sim);
    }
    await until(() => sims.every((s) => s.synced && s.acked && s.bulk >= 2), "all daemons synced, reconciled and acked", 120_000);
    const connectMs = performance.now() - t0;
    const cpuConnect = (cpuTicks(child.pid!) - cpu0) / CLK_TCK;

    // Heartbeats: every daemon once per second (staggered), for heartbeatSeconds.
    const hbCpu0 = cpuTicks(child.pid!);
    const hbT0 = performance.now();
    let heartbeats = 0;
    const perTick = Math.ceil(args.daemons / 20);
    let next = 0;
    const timer = setInterval(() => {
      for (let k = 0; k < perTick; k++) {
        const s = sims[next]!;
        next = (next + 1) % sims.length;
        s.call.write(create(DaemonEventSchema, { event: { case: "heartbeat", value: { stats: [0, 1].map((a) => ({ id: `sim${next}-${a}`, packetsAllowed: BigInt(heartbeats), packetsBlocked: 3n })) } } }));
        heartbeats++;
      }
    }, 50);
    await new Promise((r) => setTimeout(r, args.heartbeatSeconds * 1000));
    clearInterval(timer);
    const hbWallS = (performance.now() - hbT0) / 1000;
    const hbCpuS = (cpuTicks(child.pid!) - hbCpu0) / CLK_TCK;

    // Reload fan-out: one edit changes the policy of every attachment (3 per daemon).
    const before = sims.map((s) => s.bulk);
    const reloadT0 = performance.now();
    writeFileSync(policyPath, POLICY(2));
    await until(() => sims.every((s, i) => s.bulk >= before[i]! + 3), "reload pushed to every attachment", 120_000);
    const reloadMs = performance.now() - reloadT0;

    return {
      manyDaemons: {
        what: "one netfence-cp process (real binary, YAML policy) and N simulated daemon streams (2 synced + 1 subscribed attachment each)",
        daemons: args.daemons,
        attachments: args.daemons * 3,
        allSyncedReconciledAckedMs: Math.round(connectMs),
        netfenceCpCpuSecondsDuringConnect: r3(cpuConnect),
        heartbeatsSent: heartbeats,
        heartbeatPhaseSeconds: r3(hbWallS),
        netfenceCpCpuCoresDuringHeartbeats: r3(hbCpuS / hbWallS),
        reloadFanOutMs: Math.round(reloadMs),
        reloadBulkUpdates: args.daemons * 3,
        targetCpuCores: 1,
        note: "reload fan-out includes the 200 ms file-watch debounce",
      },
    };
  } finally {
    for (const s of sims) s.call.cancel();
    for (const c of channels) c.close();
    if (cp && cp.exitCode === null) {
      const exited = new Promise((r) => cp!.once("exit", r));
      cp.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (cp.exitCode === null) cp.kill("SIGKILL");
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The TCP port a process listens on, from /proc/net/tcp (its socket inodes in /proc/<pid>/fd). */
async function findListeningPort(pid: number, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const inodes = new Set<string>();
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const link = (() => { try { return readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return ""; } })();
        const m = /^socket:\[(\d+)\]$/.exec(link);
        if (m) inodes.add(m[1]!);
      }
    } catch {
      throw new Error(`netfence-cp (pid ${pid}) exited early`);
    }
    for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && f[3] === "0A" && inodes.has(f[9]!)) return parseInt(f[1]!.split(":")[1]!, 16);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("netfence-cp did not start listening");
}
