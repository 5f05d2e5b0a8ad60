import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import { E2eDaemon } from "../../helpers/e2e.js";

// A lost or corrupt state file never opens the fence (issue 11): pinned filters the state does
// not account for are kept enforcing real traffic and reported (log, metric, status); `adopt`
// re-registers them with the policy read back from the kernel maps; `detach --orphan` removes one
// on purpose. A corrupt state file is moved aside; a valid one from another daemon removes nothing.

const PORT = 7381;

interface Listed {
  attachments?: { id: string; target: string; mode: string; dnsAddress: string }[];
}

describe("orphaned filters (real kernel)", () => {
  let sb: Sandbox;
  let nw: SandboxNetwork;
  let cg: string;
  let pinRoot: string;
  let daemon: E2eDaemon;
  let ifId: string;
  let cgId: string;
  let before: Map<string, string>;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfor");
    nw = await sb.network();
    cg = await sb.cgroup();
    pinRoot = await sb.pinRoot();
    await sb.echoServer(nw.serverNs, PORT);
    daemon = new E2eDaemon({
      pinRoot,
      dns: { listenAddr: "127.0.0.1", upstream: "127.0.0.1:9" },
      metrics: true,
      yaml: `default_policy: { mode: allowlist, allow_cidrs: ["${nw.serverIp4[0]}/32"], deny_cidrs: ["${nw.serverIp4[5]}/32"] }`,
    });
    await daemon.start();
    ifId = (await daemon.attachInterface(nw.hostIf)).id;
    const r = await daemon.cli("attach", "-g", cg, "--json");
    expect(r.code, r.stderr).toBe(0);
    cgId = (JSON.parse(r.stdout) as { id: string }).id;
    before = new Map((await list()).map((a) => [a.id, a.dnsAddress]));
    // From now on the daemon's own default would be block-all: whatever an adopted orphan
    // enforces must come from the kernel maps, not from this config.
    writeFileSync(daemon.configFile, readFileSync(daemon.configFile, "utf8").replace(/^default_policy: .*$/m, "default_policy: { mode: block-all }"));
  }, 120_000);

  afterAll(async () => {
    await daemon?.cleanup();
    await sb?.cleanup();
  }, 60_000);

  const reach = (ip: string, cgroup?: string) => probe(sb, nw.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800, cgroup });
  const list = async (): Promise<NonNullable<Listed["attachments"]>> => (JSON.parse((await daemon.cli("list", "--json", "--all")).stdout) as Listed).attachments ?? [];
  const stateFile = (): string => path.join(daemon.dir, "data", "state.json");

  async function expectEnforcing(opts: { cgroup?: boolean } = {}): Promise<void> {
    expect(await reach(nw.serverIp4[0]!)).toBe(true);
    expect(await reach(nw.serverIp4[1]!)).toBe(false);
    if (opts.cgroup !== false) {
      expect(await reach(nw.serverIp4[0]!, cg)).toBe(true);
      expect(await reach(nw.serverIp4[1]!, cg)).toBe(false);
    }
  }

  async function restartWith(state: string | null): Promise<void> {
    expect(await daemon.stop()).toBe(0);
    if (state === null) rmSync(stateFile());
    else writeFileSync(stateFile(), state);
    await daemon.start();
  }

  async function expectOrphans(): Promise<void> {
    expect(await list()).toEqual([]);
    expect(readdirSync(pinRoot).filter((n) => n.startsWith("nf-")).sort()).toEqual([ifId, cgId].sort());
    const status = await daemon.cli("status");
    expect(status.stdout).toMatch(/^Orphans: +2 pinned filter\(s\) unknown to the daemon's state, still enforcing$/m);
    expect(status.stdout).toMatch(new RegExp(`^  ${ifId}  ${nw.hostIf}  attached  2 entries$`, "m"));
    expect(status.stdout).toMatch(new RegExp(`^  ${cgId}  ${cg}  attached  2 entries$`, "m"));
    expect((await daemon.metrics()).get("netfence_orphan_attachments")).toBe(2);
    expect(daemon.log()).toMatch(new RegExp(`"attachmentId":"${ifId}".*unknown to the state store: kept enforcing`));
    await expectEnforcing();
  }

  it("state.json deleted: every filter keeps enforcing; adopt --all brings them back with the policy read from the kernel", async () => {
    await restartWith(null);
    await expectOrphans();
    // Its target is held: a new attach is refused with what to do.
    const again = await daemon.cli("attach", "-i", nw.hostIf);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain(`is held by the orphaned filter ${ifId}`);

    const adopt = await daemon.cli("adopt", "--all");
    expect(adopt.code, adopt.stderr).toBe(0);
    expect(adopt.stdout).toContain(`Adopted ${ifId}`);
    expect(adopt.stdout).toContain(`Adopted ${cgId}`);
    const listed = await list();
    expect(listed.map((a) => [a.id, a.target, a.mode, a.dnsAddress]).sort()).toEqual(
      [[ifId, nw.hostIf, "POLICY_MODE_ALLOWLIST", before.get(ifId)], [cgId, cg, "POLICY_MODE_ALLOWLIST", before.get(cgId)]].sort(),
    );
    expect((await daemon.statusJson() as { orphanCount?: number }).orphanCount ?? 0).toBe(0);
    await expectEnforcing();
    // Adopted means driveable and persisted: a restart adopts them as usual.
    expect(await daemon.stop()).toBe(0);
    await daemon.start();
    expect((await list()).map((a) => a.id).sort()).toEqual([ifId, cgId].sort());
    expect(daemon.log()).toMatch(/"orphans":\[\]/);
  }, 180_000);

  it("garbage state.json: moved aside and reported; the filters keep enforcing as orphans", async () => {
    await restartWith("\u0000\u0001 not json {");
    await expectOrphans();
    const aside = readdirSync(path.dirname(stateFile())).filter((n) => n.startsWith("state.json.corrupt-"));
    expect(aside).toHaveLength(1);
    expect(readFileSync(path.join(path.dirname(stateFile()), aside[0]!), "utf8")).toBe("\u0000\u0001 not json {");
    expect((await daemon.cli("status")).stdout).toMatch(/^Warning: +state file .*state\.json was corrupt .*moved aside to .*state\.json\.corrupt-/m);
    for (const id of [ifId, cgId]) expect((await daemon.cli("adopt", "--id", id)).code).toBe(0);
    expect((await list()).map((a) => a.mode)).toEqual(["POLICY_MODE_ALLOWLIST", "POLICY_MODE_ALLOWLIST"]);
  }, 180_000);

  it("a valid state file of another daemon removes nothing; detach --orphan removes one on purpose", async () => {
    const foreign = {
      version: 1,
      daemonId: "nfd-someone-else",
      attachments: [{
        id: "nf-0123456789ab", slot: 7, target: { kind: "interface", name: "nfnoexist0", direction: "ingress" }, targetText: "nfnoexist0",
        dnsPort: 11007, metadata: {}, attachedAtMs: 1_700_000_000_000, method: "tcx", ifindex: 99999,
        policy: { mode: "block-all", audit: false, allowCidrs: [], denyCidrs: [], dns: { mode: "disabled", allowDomains: [], denyDomains: [], upstreams: [] } },
        learned: [],
      }],
    };
    await restartWith(JSON.stringify(foreign));
    await expectOrphans();
    expect(daemon.log()).toMatch(/"attachmentId":"nf-0123456789ab".*its target is gone; dropping it/);

    // The workload's packets cross the interface filter, and those of its cgroup the cgroup filter
    // too: removing the interface one on purpose shows the cgroup one still holds on its own.
    const d = await daemon.cli("detach", "--orphan", path.join(pinRoot, ifId));
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toBe(`Detached orphan ${ifId}\n`);
    expect(existsSync(path.join(pinRoot, ifId))).toBe(false);
    expect(await reach(nw.serverIp4[1]!)).toBe(true); // removed on purpose: that interface is open now
    expect(await reach(nw.serverIp4[1]!, cg)).toBe(false); // the cgroup's orphan still enforces
    expect(await reach(nw.serverIp4[0]!, cg)).toBe(true);
    expect((await daemon.cli("detach", "--orphan", ifId)).stderr).toMatch(/no orphaned attachment/);
    expect((await daemon.cli("adopt", "--id", cgId)).code).toBe(0);
    expect((await list()).map((a) => a.id)).toEqual([cgId]);
    expect((await daemon.metrics()).get("netfence_orphan_attachments")).toBe(0);
  }, 180_000);
});
