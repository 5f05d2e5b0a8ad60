import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { allow, interfaceSpec, policy, sleep } from "../../helpers/kernel-filter-fixture.js";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";

const PORT = 7105;

describe("pinned enforcement survives the loader and the daemon", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let pinRoot: string;
  const filters: KernelFilter[] = [];
  const id = `t-pin-${process.pid}`;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("pins");
    net = await sb.network();
    await sb.echoServer(net.serverNs, PORT);
    pinRoot = await sb.pinRoot();
  });
  afterAll(async () => {
    for (const f of filters) await f.close().catch(() => undefined);
    const f = await KernelFilter.start({ pinRoot });
    for (const pinned of await f.listPinned()) await f.detach(pinned).catch(() => undefined);
    await f.close();
    await sb?.cleanup();
  });

  const reach = (ip: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 700 });

  it("kill -9 of the loader: enforcement continues, a new loader is started and re-adopts", async () => {
    const f = await KernelFilter.start({ pinRoot });
    filters.push(f);
    await f.attach(interfaceSpec(id, 41, net.hostIf), policy("allowlist", [allow(`${net.serverIp4[0]}/32`)]));
    const oldPid = f.loaderPid;
    f.killLoader();
    // While the loader is dead or restarting, the pinned program keeps enforcing.
    expect(await reach(net.serverIp4[0]!)).toBe(true);
    expect(await reach(net.serverIp4[1]!)).toBe(false);
    await sleep(100);
    await f.whenReady();
    expect(f.loaderPid).not.toBe(oldPid);
    expect(f.loaderRestarts).toBe(1);
    // The new loader drives the adopted attachment.
    await f.upsertEntries(id, [allow(`${net.serverIp4[1]}/32`)]);
    expect(await reach(net.serverIp4[1]!)).toBe(true);
  });

  it("daemon gone (its loader killed, nothing detached): a new filter instance lists and adopts the pins", async () => {
    const f1 = filters.pop()!;
    await f1.close(); // stops the loader child without detaching: the daemon "died"
    expect(await reach(net.serverIp4[0]!)).toBe(true);
    expect(await reach(net.serverIp4[2]!)).toBe(false);
    const f2 = await KernelFilter.start({ pinRoot });
    filters.push(f2);
    expect(await f2.listPinned()).toEqual([id]);
    const adopted = await f2.adopt(id);
    expect(adopted).toMatchObject({ id, slot: 41, kind: "interface", mode: "allowlist", audit: false });
    expect(["tcx", "clsact"]).toContain(adopted.method);
    const before = (await f2.counters([id])).get(id)!;
    expect(before.allowed).toBeGreaterThan(0n); // counters survived with the pins
    await f2.replacePolicy(id, policy("allowlist", [allow(`${net.serverIp4[2]}/32`)]));
    expect(await reach(net.serverIp4[2]!)).toBe(true);
    expect(await reach(net.serverIp4[0]!)).toBe(false);
  });

  it("orphaned pins are cleaned: detach of a pinned id this instance never adopted", async () => {
    const f3 = await KernelFilter.start({ pinRoot });
    filters.push(f3);
    await f3.detach(id);
    expect(await f3.listPinned()).toEqual([]);
    expect(await reach(net.serverIp4[3]!)).toBe(true); // no filter left on the interface
  });
});
