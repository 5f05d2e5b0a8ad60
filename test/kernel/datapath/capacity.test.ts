import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { exactCapacityFor } from "../../../daemon/src/datapath/kernel-filter.js";
import type { FilterEntry } from "../../../daemon/src/datapath/filter.js";
import { parseCidr } from "../../../daemon/src/policy/cidr.js";
import { allow, interfaceSpec, policy, startFilter } from "../../helpers/kernel-filter-fixture.js";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";

const PORT = 7108;
const hosts = (n: number, offset = 0): FilterEntry[] =>
  Array.from({ length: n }, (_, i) => allow(`100.${64 + (((i + offset) >> 16) & 63)}.${((i + offset) >> 8) & 255}.${(i + offset) & 255}/32`));

describe("exact-match capacity: single hosts beyond the hash's size still work (stored in the LPM trie)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  const id = `t-cap-${process.pid}`;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("capy");
    net = await sb.network();
    await sb.echoServer(net.serverNs, PORT);
    filter = await startFilter(sb);
  });
  afterAll(async () => {
    await filter?.detach(id).catch(() => undefined);
    await filter?.close();
    await sb?.cleanup();
  });

  it("sizes the hash from the initial policy", () => {
    expect(exactCapacityFor([])).toBe(4096);
    expect(exactCapacityFor(hosts(10_000))).toBe(32768);
  });

  it("inserts beyond the capacity, replaces with more than fits, and deletes, with correct verdicts", async () => {
    const [a, b] = net.serverIp4;
    await filter.attach(interfaceSpec(id, 71, net.hostIf), policy("allowlist", []));
    // 4096 entries fill the hash; the server's /32 comes after them and must spill.
    await filter.upsertEntries(id, hosts(4096));
    await filter.upsertEntries(id, [...hosts(500, 5000), allow(`${a}/32`)]);
    expect(await probe(sb, net.workloadNs, "tcp", a!, { port: PORT })).toBe(true);
    expect(await probe(sb, net.workloadNs, "tcp", b!, { port: PORT, timeoutMs: 600 })).toBe(false);
    await filter.deleteEntries(id, [parseCidr(`${a}/32`)]);
    expect(await probe(sb, net.workloadNs, "tcp", a!, { port: PORT, timeoutMs: 600 })).toBe(false);
    // A replace with more single hosts than the hash holds (both generations share it).
    await filter.replacePolicy(id, policy("allowlist", [...hosts(6000, 20_000), allow(`${b}/32`)]));
    expect(await probe(sb, net.workloadNs, "tcp", b!, { port: PORT })).toBe(true);
    await filter.replacePolicy(id, policy("allowlist", [...hosts(6000, 40_000), allow(`${a}/32`)]));
    expect(await probe(sb, net.workloadNs, "tcp", a!, { port: PORT })).toBe(true);
    expect(await probe(sb, net.workloadNs, "tcp", b!, { port: PORT, timeoutMs: 600 })).toBe(false);
  });
});
