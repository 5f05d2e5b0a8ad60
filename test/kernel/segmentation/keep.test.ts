import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import type { FilterPolicy } from "../../../daemon/src/datapath/filter.js";
import { type FilterSandbox, allow, closeFilterSandbox, echoCollector, filterSandbox, interfaceSpec, noDns, sleep } from "../../helpers/kernel-filter-fixture.js";
import { RULE_ID } from "../../../daemon/src/datapath/hits-wire.js";
import { fixture, probe, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";

// Issue 15: keep or sever, per attachment (NF_SETTING_KEEP). An established TCP connection keeps working
// across a REPLACE that blocks its destination in keep mode, is cut in sever mode; a NEW connection is
// blocked in both; block-all severs even in keep mode.
const PORT = 7421;

const keepPolicy = (entries: FilterPolicy["entries"], keepEstablished: boolean): FilterPolicy => ({ mode: "allowlist", audit: false, entries, keepEstablished });

describe("keep or sever (real TCP streams)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;

  beforeAll(async () => {
    ctx = await filterSandbox("keep", PORT);
    ({ sb, net, filter } = ctx);
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  /** Starts a stream to dst (inside cgroup `cg` if given) and waits until it flows. */
  async function stream(dst: string, cg?: string) {
    const c = echoCollector();
    const child = sb.spawn(net.workloadNs, [process.execPath, fixture("stream-client.mjs"), dst, String(PORT), "5"], { cgroup: cg, onLine: c.onLine });
    await c.connected;
    await sleep(300);
    expect(c.echoes.length, "the stream flows while allowed").toBeGreaterThan(10);
    return { c, child };
  }
  const echoesAfter = (c: ReturnType<typeof echoCollector>, t: number) => c.echoes.filter((e) => e.t > t + 300).length; // in-flight echoes may land just after (loaded machine)

  async function keepThenSever(id: string, dst: string, cg?: string) {
    // keep: the stream survives a replace that no longer allows its destination...
    const s1 = await stream(dst, cg);
    await filter.replacePolicy(id, keepPolicy([], true));
    const keptAt = Date.now();
    await sleep(1000);
    expect(echoesAfter(s1.c, keptAt), "echoes of the kept stream after the replace").toBeGreaterThan(50);
    // ...while a new connection to it is blocked
    expect(await probe(sb, net.workloadNs, "tcp", dst, { port: PORT, cgroup: cg, timeoutMs: 600 }), "a new connection in keep mode").toBe(false);
    const hits = await filter.ruleHits(id);
    expect(hits.find((h) => h.ruleId === RULE_ID.KEPT)?.packets ?? 0, "kept packets are counted against the reserved rule").toBeGreaterThan(0);
    // sever: the same stream is cut by the next replace that says sever
    await filter.replacePolicy(id, keepPolicy([], false));
    const severedAt = Date.now();
    await sleep(1000);
    expect(echoesAfter(s1.c, severedAt), "echoes after the sever").toBe(0);
    s1.child.kill("SIGKILL");

    // sever from the start: a stream allowed under sever is cut by the revoke
    await filter.replacePolicy(id, keepPolicy([allow(`${dst}/32`)], false));
    const s2 = await stream(dst, cg);
    await filter.replacePolicy(id, keepPolicy([], false));
    const cutAt = Date.now();
    await sleep(1000);
    expect(echoesAfter(s2.c, cutAt), "sever mode: echoes after the revoke").toBe(0);
    expect(await probe(sb, net.workloadNs, "tcp", dst, { port: PORT, cgroup: cg, timeoutMs: 600 }), "a new connection in sever mode").toBe(false);
    s2.child.kill("SIGKILL");

    // block-all severs in keep mode too
    await filter.replacePolicy(id, keepPolicy([allow(`${dst}/32`)], true));
    const s3 = await stream(dst, cg);
    await filter.setMode(id, "block-all", false);
    const blockedAt = Date.now();
    await sleep(1000);
    expect(echoesAfter(s3.c, blockedAt), "keep mode, block-all: echoes after").toBe(0);
    s3.child.kill("SIGKILL");
  }

  it("cgroup attachment (the socket's nf_sk stamp)", async () => {
    const id = `t-keep-cg-${process.pid}`;
    const cg = await sb.cgroup();
    const dst = net.serverIp4[0]!;
    await filter.attach({ id, slot: 51, target: { kind: "cgroup", path: cg }, dns: noDns }, keepPolicy([allow(`${dst}/32`)], true));
    await keepThenSever(id, dst, cg);
    await filter.detach(id);
  });

  it("interface attachment (the flow table nf_flows)", async () => {
    const id = `t-keep-if-${process.pid}`;
    const dst = net.serverIp4[1]!;
    await filter.attach(interfaceSpec(id, 52, net.hostIf), keepPolicy([allow(`${dst}/32`)], true));
    await keepThenSever(id, dst);
    await filter.detach(id);
  });
});
