import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import path from "node:path";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { type FilterSandbox, closeFilterSandbox, filterSandbox, noDns, policy, startFilter } from "../../helpers/kernel-filter-fixture.js";
import { KIND, SCOPE_FLAG, TCP, scopeWire, scopedEntry } from "../../helpers/scope-wire-fixture.js";
import { fixture, sh, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";

// Issue 15: a cgroup attachment's second link (cgroup/sock_create, pinned "link_sock") stamps every new
// socket with its creator's gid. Detaching it with bpftool is reported as a detached filter, RELINK
// attaches it again (the egress link untouched), another loader adopts it from the pins, UNLOAD removes it.
const PORT = 7441;
const LPORT = 7442;

async function probeAs(sb: Sandbox, ns: string, cg: string, uid: number, gid: number, timeoutMs = 1000): Promise<boolean> {
  const argv = ["setpriv", `--reuid=${uid}`, `--regid=${gid}`, "--clear-groups", process.execPath, fixture("probe.mjs"), "tcp", "127.0.0.1", String(LPORT), String(timeoutMs)];
  return (await sb.exec(ns, argv, { cgroup: cg, allowFail: true, timeoutMs: timeoutMs + 5000 })).stdout.trim() === "ok";
}

describe("the owner-stamp link of a cgroup attachment", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  let cg: string;
  const id = `t-owner-${process.pid}`;

  beforeAll(async () => {
    ctx = await filterSandbox("ownr", PORT);
    ({ sb, net, filter } = ctx);
    await sb.echoServer(net.workloadNs, LPORT);
    cg = await sb.cgroup();
    await filter.attach({ id, slot: 71, target: { kind: "cgroup", path: cg }, dns: noDns }, policy("allowlist", []));
    await filter.replaceCompiled(id, policy("allowlist", []), [scopedEntry("127.0.0.1/32", 1, SCOPE_FLAG.GID)], scopeWire([
      { scope: 1, kind: KIND.GID, principal: 1, proto: TCP, port: LPORT, allow: true, ruleId: 80 },
    ]));
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  it("detached with bpftool: reported, new sockets lose their gid (the group rule stops matching), RELINK restores both", async () => {
    expect(await probeAs(sb, net.workloadNs, cg, 65534, 1), "gid 1 before").toBe(true);
    const linkSock = path.join(await sb.pinRoot(), id, "link_sock"); // the filter's pin root (sandbox.ts)
    expect(existsSync(linkSock)).toBe(true);
    await sh("bpftool", ["link", "detach", "pinned", linkSock]);
    const found = (await filter.verify(new Map([[id, { pins: true }]]))).get(id) ?? [];
    expect(found.map((f) => f.kind)).toContain("filter-detached");
    expect(await probeAs(sb, net.workloadNs, cg, 65534, 1, 600), "no stamp: the gid is unknown").toBe(false);
    await filter.relink(id, { kind: "cgroup", path: cg });
    expect((await filter.verify(new Map([[id, { pins: true }]]))).get(id) ?? []).toEqual([]);
    expect(await probeAs(sb, net.workloadNs, cg, 65534, 1), "gid 1 after RELINK").toBe(true);
    const progs = JSON.parse((await sh("bpftool", ["-j", "cgroup", "show", cg])).stdout) as Array<{ attach_type?: string }>;
    expect(progs.map((p) => p.attach_type ?? "").sort()).toEqual(["cgroup_inet_egress", "cgroup_inet_sock_create"].sort());
  });

  it("another loader adopts it from the pins; UNLOAD detaches both links", async () => {
    const other = await startFilter(sb);
    try {
      await other.adopt(id);
      expect((await other.verify(new Map([[id, { pins: true }]]))).get(id) ?? []).toEqual([]);
      await other.detach(id);
      const out = (await sh("bpftool", ["-j", "cgroup", "show", cg])).stdout.trim(); // nothing at all when no program is attached
      expect(out === "" ? [] : (JSON.parse(out) as unknown[])).toEqual([]);
    } finally {
      await other.close();
    }
  });
});
