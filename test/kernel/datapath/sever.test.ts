import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { parseCidr } from "@netfence/proto/parse";
import { type FilterSandbox, allow, closeFilterSandbox, echoCollector, filterSandbox, interfaceSpec, noDns, policy, sleep } from "../../helpers/kernel-filter-fixture.js";
import { fixture, type SandboxNetwork, type Sandbox } from "../../helpers/sandbox.js";

const PORT = 7103;

describe("revoking a destination severs an established TCP stream", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;

  beforeAll(async () => {
    ctx = await filterSandbox("sevr", PORT);
    ({ sb, net, filter } = ctx);
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  async function severCheck(id: string, dst: string, cgroup?: string) {
    const c = echoCollector();
    sb.spawn(net.workloadNs, [process.execPath, fixture("stream-client.mjs"), dst, String(PORT), "5"], { cgroup, onLine: c.onLine });
    await c.connected;
    await sleep(300);
    const before = c.echoes.length;
    expect(before, "the stream flows while allowed").toBeGreaterThan(10);
    await filter.deleteEntries(id, [parseCidr(`${dst}/32`)]);
    const revokedAt = Date.now();
    await sleep(1000);
    // Echoes already in flight may land just after the call returns; nothing may arrive later.
    const late = c.echoes.filter((e) => e.t > revokedAt + 100);
    expect(late, "echoes more than 100 ms after the revoke").toEqual([]);
  }

  it("interface attachment: the stream stops within 100 ms of the revoke", async () => {
    const id = `t-sv-if-${process.pid}`;
    const dst = net.serverIp4[0]!;
    await filter.attach(interfaceSpec(id, 21, net.hostIf), policy("allowlist", [allow(`${dst}/32`)]));
    await severCheck(id, dst);
    await filter.detach(id);
  });

  it("cgroup attachment: the stream stops within 100 ms of the revoke", async () => {
    const id = `t-sv-cg-${process.pid}`;
    const cg = await sb.cgroup();
    const dst = net.serverIp4[1]!;
    await filter.attach({ id, slot: 22, target: { kind: "cgroup", path: cg }, dns: noDns }, policy("allowlist", [allow(`${dst}/32`)]));
    await severCheck(id, dst, cg);
    await filter.detach(id);
  });
});
