import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { type FilterSandbox, allow, closeFilterSandbox, filterSandbox, noDns, policy } from "../../helpers/kernel-filter-fixture.js";
import { probe, type SandboxNetwork, type Sandbox } from "../../helpers/sandbox.js";

const PORT = 7102;

describe("cgroup attachment (cgroup_skb/egress): processes in the cgroup are filtered, others are not", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  let cg: string;
  const id = `t-cg-${process.pid}`;

  beforeAll(async () => {
    ctx = await filterSandbox("cgrp", PORT);
    ({ sb, net, filter } = ctx);
    cg = await sb.cgroup();
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  it("allowlist: a process in the cgroup reaches only listed destinations (TCP, UDP, ICMP, v4/v6)", async () => {
    const [a, b] = net.serverIp4;
    const [a6, b6] = net.serverIp6;
    const r = await filter.attach({ id, slot: 11, target: { kind: "cgroup", path: cg }, dns: noDns }, policy("allowlist", [allow(`${a}/32`), allow(`${net.subnet6}::10/127`)]));
    expect(r.method).toBe("cgroup-link");
    for (const kind of ["tcp", "udp", "icmp"] as const) {
      expect(await probe(sb, net.workloadNs, kind, a!, { port: PORT, cgroup: cg }), `${kind} ${a}`).toBe(true);
      expect(await probe(sb, net.workloadNs, kind, b!, { port: PORT, cgroup: cg, timeoutMs: 600 }), `${kind} ${b}`).toBe(false);
      expect(await probe(sb, net.workloadNs, kind, a6!, { port: PORT, cgroup: cg }), `${kind} ${a6}`).toBe(true);
      expect(await probe(sb, net.workloadNs, kind, net.serverIp6[2]!, { port: PORT, cgroup: cg, timeoutMs: 600 }), `${kind} ${b6}`).toBe(false);
    }
    // The same destination from a process outside the cgroup (same namespace) is not filtered.
    expect(await probe(sb, net.workloadNs, "tcp", b!, { port: PORT })).toBe(true);
  });

  it("block-all stops the cgroup's traffic and a detach restores it", async () => {
    await filter.setMode(id, "block-all", false);
    expect(await probe(sb, net.workloadNs, "tcp", net.serverIp4[0]!, { port: PORT, cgroup: cg, timeoutMs: 600 })).toBe(false);
    await filter.detach(id);
    expect(await probe(sb, net.workloadNs, "tcp", net.serverIp4[0]!, { port: PORT, cgroup: cg })).toBe(true);
    expect(await filter.listPinned()).not.toContain(id);
  });
});
