import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { probe, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import type { DaemonProcess } from "../../helpers/daemon-harness.js";
import { daemonRig, type DaemonRig } from "../../helpers/daemon-rig.js";

// kill -9 of the daemon: the pinned filters keep enforcing while it is down, and the restarted
// daemon re-adopts the same attachments (ids, DNS ports, policy) with nothing duplicated or orphaned.

const PORT = 7321;

interface ListJson {
  attachments: { id: string; target: string; dnsAddress: string; mode: string; metadata?: Record<string, string> }[];
  totalCount: number;
}

describe("restart after kill -9 (real kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let daemon: DaemonProcess;
  let pinRoot: string;
  let cg: string;

  let rig: DaemonRig | undefined;

  beforeAll(async () => {
    rig = await daemonRig("nfrs", { servers: { ports: [PORT] }, yaml: (n) => `default_policy: { mode: allowlist, allow_cidrs: ["${n.serverIp4[0]}/32"] }` });
    ({ sb, net, pinRoot, cg, daemon } = rig);
  }, 120_000);

  afterAll(() => rig?.cleanup(), 60_000);

  const reach = (ip: string, cgroup?: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800, cgroup });
  const list = async (): Promise<ListJson> => JSON.parse((await daemon.cli("list", "--all", "--json")).stdout) as ListJson;

  async function expectEnforcing(): Promise<void> {
    expect(await reach(net.serverIp4[0]!)).toBe(true);
    expect(await reach(net.serverIp4[1]!)).toBe(false);
  }

  it("keeps enforcing through kill -9 and re-adopts the same attachments", async () => {
    const a = await daemon.cli("attach", "-i", net.hostIf, "--metadata", "vm=1", "--json");
    const b = await daemon.cli("attach", "-g", cg, "--json");
    expect([a.code, b.code]).toEqual([0, 0]);
    const before = await list();
    expect(before.totalCount).toBe(2);
    await expectEnforcing();

    await daemon.kill9();
    expect(existsSync(daemon.socket)).toBe(true); // stale socket left behind by the crash
    await expectEnforcing();
    // The cgroup filter also still holds for its processes.
    expect(await reach(net.serverIp4[2]!, cg)).toBe(false);

    await daemon.start();
    const after = await list();
    expect(after.attachments.map((x) => [x.id, x.target, x.dnsAddress, x.mode, x.metadata ?? {}]).sort()).toEqual(
      before.attachments.map((x) => [x.id, x.target, x.dnsAddress, x.mode, x.metadata ?? {}]).sort(),
    );
    expect(daemon.log()).toMatch(/"adopted":\["nf-[0-9a-f]{12}","nf-[0-9a-f]{12}"\],"removed":\[\],"orphans":\[\]/);
    await expectEnforcing();
    expect(readdirSync(pinRoot).filter((n) => n.startsWith("nf-")).sort()).toEqual(before.attachments.map((x) => x.id).sort());

    // Still fully driveable after adoption.
    const id = after.attachments.find((x) => x.target === net.hostIf)!.id;
    expect((await daemon.cli("detach", "--id", id)).code).toBe(0);
    expect(await reach(net.serverIp4[1]!)).toBe(true);
    expect(existsSync(path.join(pinRoot, id))).toBe(false);
    // A new attach after the restart gets a fresh port, not one still in use.
    const c = JSON.parse((await daemon.cli("attach", "-i", net.hostIf, "--json")).stdout) as { id: string; dnsAddress: string };
    expect(c.dnsAddress).not.toBe(after.attachments.find((x) => x.target !== net.hostIf)!.dnsAddress);
    await expectEnforcing();
  }, 180_000);

  it("SIGTERM stops gracefully and leaves the filters enforcing; the next start adopts them", async () => {
    const ids = (await list()).attachments.map((x) => x.id).sort();
    expect(await daemon.stop()).toBe(0);
    expect(existsSync(daemon.socket)).toBe(false);
    await expectEnforcing();
    await daemon.start();
    expect((await list()).attachments.map((x) => x.id).sort()).toEqual(ids);
    await expectEnforcing();
  }, 120_000);

  it("on restart drops attachments whose target vanished while it was down", async () => {
    const ids = (await list()).attachments;
    const cgId = ids.find((x) => x.target === cg)!.id;
    await daemon.kill9();
    await sb.exec(net.workloadNs, ["true"]); // (namespace still fine)
    const { rmdir } = await import("node:fs/promises");
    await rmdir(cg);
    await daemon.start();
    const after = await list();
    expect(after.attachments.map((x) => x.id)).not.toContain(cgId);
    expect(after.totalCount).toBe(ids.length - 1);
    expect(existsSync(path.join(pinRoot, cgId))).toBe(false);
    await expectEnforcing();
  }, 120_000);
});
