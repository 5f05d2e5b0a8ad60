import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, readFileSync, rmSync, rmdirSync } from "node:fs";
import path from "node:path";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import { DaemonProcess } from "../../helpers/daemon-harness.js";
import { PythonControlPlane } from "../../compat/python-control-plane.js";
import { readStoredState } from "../../helpers/stored-state.js";

// Reboot persistence (issue 11): bpffs is empty after a reboot, the interfaces and cgroups are
// re-created by the orchestrator with the same names. On start the daemon re-creates every
// attachment the state store knows whose target exists again — same id, slot, DNS port, policy,
// TTL deadlines — before it reports ready; one whose target did not come back is dropped and
// reported. Real traffic follows the policy again as soon as `status` answers.

const PORT = 7351;

interface Stored {
  id: string;
  slot: number;
  dnsPort: number;
  targetText: string;
  policy: { mode: string; allowCidrs: { cidr: string; expiresAtMs: number | null }[] };
}

describe("reboot: pins gone, targets re-created (real kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let pinRoot: string;
  let cg: string;
  let cgGone: string;
  let py: PythonControlPlane;
  let daemon: DaemonProcess;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfrb");
    net = await sb.network();
    pinRoot = await sb.pinRoot();
    cg = await sb.cgroup();
    cgGone = await sb.cgroup();
    await sb.echoServer(net.serverNs, PORT);
    py = await PythonControlPlane.start({ ackPolicy: { mode: "POLICY_MODE_ALLOWLIST", allowCidrs: [{ cidr: `${net.serverIp4[0]}/32` }] } });
    daemon = new DaemonProcess({ pinRoot, yaml: `control_plane: { url: "127.0.0.1:${py.port}", subscribe_ack_timeout: 5s }` });
    await daemon.start();
  }, 120_000);

  afterAll(async () => {
    await daemon?.cleanup();
    await py?.stop();
    await sb?.cleanup();
  }, 60_000);

  const reach = (ip: string, cgroup?: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800, cgroup });
  // The state store's base and journal, replayed (test/helpers/stored-state.ts).
  const stored = (): Stored[] => (readStoredState(path.join(daemon.dir, "data"))?.attachments ?? []) as unknown as Stored[];

  it("re-creates the interface and cgroup attachments with the same id, slot, DNS port, policy and deadlines before it is ready", async () => {
    const a = await daemon.cli("attach", "-i", net.hostIf, "--json");
    const b = await daemon.cli("attach", "-g", cg, "--json");
    const c = await daemon.cli("attach", "-g", cgGone, "--json");
    expect([a.code, b.code, c.code]).toEqual([0, 0, 0]);
    const ids = [a, b, c].map((r) => (JSON.parse(r.stdout) as { id: string }).id);
    // A rule with a TTL, pushed the way a control plane written for the Go original does.
    for (const id of ids.slice(0, 2)) await py.push({ id, allowCidr: { cidr: `${net.serverIp4[3]}/32`, ttl: "3600s" } });
    await waitUntil(() => stored().filter((s) => s.policy.allowCidrs.length === 2).length === 2, "TTL rules saved");
    const before = stored();
    expect(await reach(net.serverIp4[0]!)).toBe(true);
    expect(await reach(net.serverIp4[1]!)).toBe(false);
    expect(await reach(net.serverIp4[3]!)).toBe(true);
    expect(await reach(net.serverIp4[1]!, cg)).toBe(false);

    // The "reboot": the daemon dies, bpffs is emptied, the veth and a cgroup come back with the same names, one cgroup does not.
    await daemon.kill9();
    rmSync(pinRoot, { recursive: true, force: true });
    await sb.recreateWorkloadLink(net);
    rmdirSync(cg);
    mkdirSync(cg);
    rmdirSync(cgGone);
    expect(await reach(net.serverIp4[1]!)).toBe(true); // nothing enforces now
    expect(await reach(net.serverIp4[1]!, cg)).toBe(true);

    const logStart = daemon.log().length;
    await daemon.start();
    const status = await daemon.cli("status", "--json");
    expect(status.code).toBe(0);
    // As soon as status answers, the policy holds again, for both.
    expect(await reach(net.serverIp4[1]!)).toBe(false);
    expect(await reach(net.serverIp4[0]!)).toBe(true);
    expect(await reach(net.serverIp4[3]!)).toBe(true);
    expect(await reach(net.serverIp4[1]!, cg)).toBe(false);
    expect(await reach(net.serverIp4[0]!, cg)).toBe(true);

    const log = daemon.log().slice(logStart);
    const recreatedAt = log.indexOf("attachment re-created from the state store");
    expect(recreatedAt).toBeGreaterThan(-1);
    expect(recreatedAt).toBeLessThan(log.indexOf('"msg":"netfenced ready"'));
    expect(log).toContain(`"recreated":[`);
    expect(log).toMatch(new RegExp(`"attachmentId":"${ids[2]}".*its target is gone; dropping it`));

    const after = stored();
    const pick = (s: Stored) => [s.id, s.slot, s.dnsPort, s.targetText, s.policy.mode, s.policy.allowCidrs];
    expect(after.map(pick).sort()).toEqual(before.filter((s) => s.id !== ids[2]).map(pick).sort());
    expect(existsSync(path.join(pinRoot, ids[0]!))).toBe(true);
    expect(existsSync(path.join(pinRoot, ids[2]!))).toBe(false);
    const listed = JSON.parse((await daemon.cli("list", "--json", "--all")).stdout) as { attachments: { id: string; dnsAddress: string }[] };
    expect(listed.attachments.map((x) => x.id).sort()).toEqual(ids.slice(0, 2).sort());
    // The control plane sees them in the SyncRequest of the new daemon, with the dropped one gone.
    await py.waitFor(() => py.ofKind("sync").length === 2, "second SyncRequest");
    const sync = py.ofKind("sync")[1]!["attachments"] as { id: string }[];
    expect(sync.map((x) => x.id).sort()).toEqual(ids.slice(0, 2).sort());
  }, 180_000);

  it("--no-restore: a clean start drops attachments whose pins are gone", async () => {
    const ids = stored().map((s) => s.id);
    await daemon.kill9();
    rmSync(pinRoot, { recursive: true, force: true });
    await sb.recreateWorkloadLink(net);
    const clean = new DaemonProcess({ pinRoot, startArgs: ["--no-restore"] });
    try {
      // Same state as `daemon`: copy its data_dir.
      mkdirSync(path.join(clean.dir, "data"));
      const { copyFileSync } = await import("node:fs");
      for (const f of ["state.json", "state.journal"]) {
        if (existsSync(path.join(daemon.dir, "data", f))) copyFileSync(path.join(daemon.dir, "data", f), path.join(clean.dir, "data", f));
      }
      await clean.start();
      const listed = JSON.parse((await clean.cli("list", "--json", "--all")).stdout) as { attachments?: unknown[] };
      expect(listed.attachments ?? []).toEqual([]);
      for (const id of ids) expect(clean.log()).toMatch(new RegExp(`"attachmentId":"${id}".*restore is off; dropping it`));
      expect(await reach(net.serverIp4[1]!)).toBe(true);
    } finally {
      await clean.cleanup();
    }
  }, 120_000);
});

async function waitUntil(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
