import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { statSync } from "node:fs";
import path from "node:path";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { formatCidr } from "@netfence/proto/parse";
import { type FilterSandbox, allow, closeFilterSandbox, deny, filterSandbox, noDns, policy, startFilter } from "../../helpers/kernel-filter-fixture.js";
import { probe, sh, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";

// The loader ops of issue 11 against the real kernel: DUMP reads an attachment's settings and the
// active generation's entries back from its pins (for re-registering orphans), by a loader that
// never loaded it; ADOPT says whether the filter really runs; RELINK attaches it again from its
// pins after its link was detached — with real traffic from a process in the cgroup.

const PORT = 7131;

describe("inspect (DUMP) and relink (RELINK) on the real kernel", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  let cg: string;
  const id = `t-dump-${process.pid}`;

  beforeAll(async () => {
    ctx = await filterSandbox("insp", PORT);
    ({ sb, net, filter } = ctx);
    cg = await sb.cgroup();
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  const reach = (ip: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, cgroup: cg, timeoutMs: 700 });

  it("a fresh loader reads back mode, audit, entries and deadlines, the cgroup and the DNS port from the pins", async () => {
    const deadline = Date.now() + 600_000;
    const entries = [
      allow(`${net.serverIp4[0]}/32`),
      allow("10.0.0.0/8", deadline),
      deny(`${net.serverIp4[1]}/32`),
      allow(`${net.subnet6}::10/127`),
      deny("2001:db8::/32"),
    ];
    await filter.attach({ id, slot: 17, target: { kind: "cgroup", path: cg }, dns: { ...noDns, ipv4: "127.0.0.1", port: 11234 } }, policy("denylist", entries, true));
    // Another loader, as a daemon that lost its state would have: it never loaded this attachment.
    const other = await startFilter(sb);
    try {
      const p = await other.inspect(id);
      expect([p.kind, p.method, p.slot, p.dnsPort, p.mode, p.audit, p.attached]).toEqual(["cgroup", "cgroup-link", 17, 11234, "denylist", true, true]);
      expect(p.cgroupId).toBe(statSync(cg, { bigint: true }).ino);
      const got = new Map(p.policy.entries.map((e) => [formatCidr(e.cidr), e]));
      expect([...got.keys()].sort()).toEqual(entries.map((e) => formatCidr(e.cidr)).sort());
      for (const e of entries) {
        const g = got.get(formatCidr(e.cidr))!;
        expect([g.allow, g.deny], formatCidr(e.cidr)).toEqual([e.allow, e.deny]);
        if (e.expiresAtMs === null) expect(g.expiresAtMs).toBeNull();
        else expect(Math.abs(g.expiresAtMs! - e.expiresAtMs)).toBeLessThan(1000);
      }
    } finally {
      await other.close();
    }
  });

  it("a detached cgroup link is reported as not attached and RELINK attaches the same program and policy again", async () => {
    await filter.replacePolicy(id, policy("allowlist", [allow(`${net.serverIp4[0]}/32`)]));
    expect(await reach(net.serverIp4[1]!)).toBe(false);
    await sh("bpftool", ["link", "detach", "pinned", path.join(filter.pinRoot, id, "link")]);
    expect(await reach(net.serverIp4[1]!)).toBe(true); // really detached
    const other = await startFilter(sb);
    try {
      expect((await other.adopt(id)).attached).toBe(false);
      const r = await other.relink(id, { kind: "cgroup", path: cg });
      expect(r.method).toBe("cgroup-link");
      expect((await other.inspect(id)).attached).toBe(true);
      expect(await reach(net.serverIp4[1]!)).toBe(false);
      expect(await reach(net.serverIp4[0]!)).toBe(true);
      // A filter that is attached is left as it is.
      await other.relink(id, { kind: "cgroup", path: cg });
      expect(await reach(net.serverIp4[1]!)).toBe(false);
    } finally {
      await other.close();
    }
  });
});
