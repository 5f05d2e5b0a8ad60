import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import pino from "pino";
import { requireKernel, Sandbox, type SandboxNetwork } from "../helpers/sandbox.js";
import { waitFor } from "../helpers/daemon-harness.js";
import { E2eDaemon, reachability } from "../helpers/e2e.js";
import { ControlPlaneServer, type DaemonHandle } from "../../sdk/src/index.js";
import { readHistory } from "../../daemon/src/history/history-file.js";

// Issue 14 (seed 004 NFR-5), end to end: the audit trail of the real `netfenced` process. Changes
// from a control plane (with their command ids) and from the CLI appear in `netfenced history`
// with source and result; rejected commands are recorded as rejected; the trail survives a
// graceful restart and a kill -9; the Prometheus counter follows it. Real kernel and packets:
// each recorded change is also checked to have (or not have) changed what the workload reaches.

const PORT = 7431;

interface JsonEntry {
  seq: string;
  time: string;
  attachmentId?: string;
  source: string;
  action: string;
  commandId?: string;
  controlPlane?: string;
  summary?: string;
  result: string;
  error?: string;
  skipped?: string[];
}

describe("audit trail (netfenced history), end to end", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let server: ControlPlaneServer;
  let daemon: E2eDaemon;
  let cpAddress = "";
  let s: readonly string[];
  const handles: DaemonHandle[] = [];
  const handle = (): DaemonHandle => handles[handles.length - 1]!;

  const history = async (...args: string[]): Promise<JsonEntry[]> => {
    const r = await daemon.cli("history", "--json", ...args);
    if (r.code !== 0) throw new Error(`history failed (${r.code}): ${r.stderr}`);
    return (JSON.parse(r.stdout) as { entries?: JsonEntry[] }).entries ?? [];
  };
  const expectReach = async (want: Record<string, boolean>) => expect(await reachability(sb, net.workloadNs, PORT, Object.keys(want))).toEqual(want);

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfhi");
    net = await sb.network();
    s = net.serverIp4;
    await sb.echoServer(net.serverNs, PORT);
    server = new ControlPlaneServer({
      logger: pino({ level: "silent" }),
      hooks: {
        onDaemonSynced: (d) => void handles.push(d),
        onSubscribed: () => ({ mode: "allowlist", allow: [`${s[0]}/32`] }),
      },
    });
    const port = await server.listen("127.0.0.1:0");
    cpAddress = `127.0.0.1:${port}`;
    daemon = new E2eDaemon({
      pinRoot: await sb.pinRoot(),
      dns: { listenAddr: "127.0.0.1", upstream: "127.0.0.1:9" },
      controlPlane: { url: cpAddress, ackTimeout: "3s" },
      metrics: true,
    });
    await daemon.start();
    await waitFor(() => handles.length === 1, "the daemon's SyncRequest", 15_000);
  }, 120_000);

  afterAll(async () => {
    await daemon?.cleanup();
    await server?.close(100);
    await sb?.cleanup();
  });

  let id = "";
  const recorded = new Map<string, string>(); // what we sent → its command id

  it("records the attach and every control-plane command with its command id, address and result", async () => {
    id = (await daemon.attachInterface(net.hostIf)).id;
    await expectReach({ [s[0]!]: true, [s[1]!]: false });

    const allow = await handle().allowCidr(id, `${s[1]}/32`);
    expect(allow.applied).toBe(true);
    recorded.set("allow", allow.commandId);
    await expectReach({ [s[0]!]: true, [s[1]!]: true });

    // Rejected when parsed (a /33): nothing changes.
    const bad = await handle().allowCidr(id, "10.0.0.0/33");
    expect(bad.applied).toBe(false);
    recorded.set("bad", bad.commandId);
    // Rejected when applied (no such attachment).
    const unknown = await handle().setMode("nf-000000000000", "block-all");
    expect(unknown.applied).toBe(false);
    recorded.set("unknown", unknown.commandId);

    const bulk = await handle().bulkUpdate(id, { mode: "allowlist", allow: [`${s[1]}/32`, "10.20.0.0/16"] });
    expect(bulk.applied).toBe(true);
    recorded.set("bulk", bulk.commandId);
    await expectReach({ [s[0]!]: false, [s[1]!]: true });

    const entries = await history();
    const byCmd = (cmd: string) => entries.find((e) => e.commandId === recorded.get(cmd));
    expect(entries.find((e) => e.action === "attach" && e.attachmentId === id)).toMatchObject({ source: "control-plane", result: "applied" });
    expect(entries.find((e) => e.action === "subscribed-ack" && e.attachmentId === id)).toMatchObject({ source: "control-plane", controlPlane: cpAddress, result: "applied" });
    expect(byCmd("allow")).toMatchObject({ attachmentId: id, source: "control-plane", controlPlane: cpAddress, action: "allow-cidr", summary: `allow +${s[1]}/32`, result: "applied" });
    expect(byCmd("bad")).toMatchObject({ attachmentId: id, source: "control-plane", result: "rejected" });
    expect(byCmd("bad")!.error).toMatch(/10\.0\.0\.0\/33/);
    expect(byCmd("unknown")).toMatchObject({ attachmentId: "nf-000000000000", action: "set-mode", result: "rejected" });
    expect(byCmd("unknown")!.error).toMatch(/no attachment/);
    expect(byCmd("bulk")).toMatchObject({ action: "bulk-update", result: "applied", summary: `mode allowlist (unchanged); allow +1/-1 (+10.20.0.0/16, -${s[0]}/32); deny +0/-0; dns rules kept` });
    // Oldest first, seq increasing.
    const seqs = entries.map((e) => Number(e.seq));
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));

    // Filters: one attachment, since, limit.
    expect((await history("--id", id)).every((e) => e.attachmentId === id)).toBe(true);
    expect(await history("--since", new Date(Date.now() + 60_000).toISOString())).toEqual([]);
    expect((await history("--since", "10m")).length).toBe(entries.length);
    expect((await history("--limit", "1"))[0]!.seq).toBe(entries[entries.length - 1]!.seq);

    const status = JSON.parse((await daemon.cli("status", "--json")).stdout) as { historyEntries: number; historyWriteErrors: number };
    expect(status.historyEntries).toBe(entries.length);
    expect(status.historyWriteErrors).toBe(0);

    const table = await daemon.cli("history", "--id", id);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(recorded.get("allow")!);
    expect(table.stdout).toMatch(/rejected: .*10\.0\.0\.0\/33/);

    const m = await daemon.metrics();
    expect(m.get('netfence_policy_changes_total{source="control-plane",result="applied"}')).toBeGreaterThanOrEqual(4);
    expect(m.get('netfence_policy_changes_total{source="control-plane",result="rejected"}')).toBe(2);
    // The apply latency: end to end per control-plane command, and per phase for those that reached the kernel.
    expect(m.get('netfence_command_apply_seconds_count{kind="bulk-update"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('netfence_command_apply_phase_seconds_count{phase="kernel"}')).toBeGreaterThanOrEqual(2);
    expect(m.get('netfence_command_apply_phase_seconds_count{phase="plan"}')).toBe(m.get('netfence_command_apply_phase_seconds_count{phase="kernel"}'));
  });

  it("survives a graceful restart and a kill -9; changes after the restart continue the sequence", async () => {
    const before = await history();
    expect(await daemon.stop()).toBe(0);
    await daemon.start();
    await waitFor(() => handles.length === 2, "the SyncRequest after the restart", 15_000);
    const after = await history();
    expect(after.slice(0, before.length)).toEqual(before);

    const deny = await handle().denyCidr(id, `${s[1]}/32`);
    expect(deny.applied).toBe(true);
    // The entry is written off the command's path: wait until it is in the file, then crash.
    const file = path.join(daemon.dir, "data", "history.journal");
    await waitFor(() => readHistory(readFileSync(file, "utf8")).entries.some((e) => e.commandId === deny.commandId), "the deny in history.journal", 5000);
    await daemon.kill9();
    await daemon.start();
    await waitFor(() => handles.length === 3, "the SyncRequest after the crash", 15_000);
    const crashed = await history();
    expect(crashed.slice(0, before.length)).toEqual(before);
    const denied = crashed.find((e) => e.commandId === deny.commandId);
    expect(denied).toMatchObject({ action: "deny-cidr", result: "applied" });
    expect(Number(denied!.seq)).toBeGreaterThan(Number(before[before.length - 1]!.seq));
    await expectReach({ [s[1]!]: false });
  });

  it("records a CLI detach with source cli", async () => {
    const r = await daemon.cli("detach", "--id", id);
    expect(r.code).toBe(0);
    await waitFor(async () => (await history("--id", id)).some((e) => e.action === "detach"), "the detach entry", 5000);
    const last = (await history("--id", id)).at(-1)!;
    expect(last).toMatchObject({ source: "cli", action: "detach", result: "applied" });
    await expectReach({ [s[0]!]: true, [s[1]!]: true });
  });

  it("rejects a bad --since and a bad --id with a one-line error", async () => {
    const a = await daemon.cli("history", "--since", "yesterday");
    expect(a.code).not.toBe(0);
    expect(a.stderr).toMatch(/duration|RFC 3339/);
    const b = await daemon.cli("history", "--id", "../x");
    expect(b.code).not.toBe(0);
  });
});
