import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { exactCapacityFor } from "../../../daemon/src/datapath/load-request.js";
import type { FilterEntry } from "../../../daemon/src/datapath/filter.js";
import { parseCidr } from "@netfence/proto/parse";
import { type FilterSandbox, allow, closeFilterSandbox, filterSandbox, interfaceSpec, policy } from "../../helpers/kernel-filter-fixture.js";
import { probe, type SandboxNetwork, type Sandbox } from "../../helpers/sandbox.js";

const PORT = 7108;
const hosts = (n: number, offset = 0): FilterEntry[] =>
  Array.from({ length: n }, (_, i) => allow(`100.${64 + (((i + offset) >> 16) & 63)}.${((i + offset) >> 8) & 255}.${(i + offset) & 255}/32`));

describe("exact-match capacity: single hosts beyond the hash's size still work (stored in the LPM trie)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  const id = `t-cap-${process.pid}`;

  beforeAll(async () => {
    ctx = await filterSandbox("capy", PORT);
    ({ sb, net, filter } = ctx);
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
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
