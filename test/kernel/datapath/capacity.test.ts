import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { exactCapacityFor } from "../../../daemon/src/datapath/load-request.js";
import { CLOSED_GUARDS, type FilterEntry } from "../../../daemon/src/datapath/filter.js";
import { formatCidr, parseCidr } from "@netfence/proto/parse";
import { type FilterSandbox, allow, closeFilterSandbox, echoCollector, filterSandbox, interfaceSpec, policy, sleep } from "../../helpers/kernel-filter-fixture.js";
import { fixture, probe, type SandboxNetwork, type Sandbox } from "../../helpers/sandbox.js";

const PORT = 7108;
/** n distinct /32 allows in 100.64.0.0/10 (never used by the sandbox), from `offset` on. */
const hosts = (n: number, offset = 0): FilterEntry[] =>
  Array.from({ length: n }, (_, i) => allow(`100.${64 + (((i + offset) >> 16) & 63)}.${((i + offset) >> 8) & 255}.${(i + offset) & 255}/32`));
const hosts6 = (n: number): FilterEntry[] => Array.from({ length: n }, (_, i) => allow(`2001:db8:77::${(i + 1).toString(16)}/128`));

/** Polls the loader's TABLES until `done` holds (the idle loop's lazy work), for at most 5 s. */
async function until(filter: KernelFilter, id: string, done: (t: Awaited<ReturnType<KernelFilter["exactTables"]>>) => boolean) {
  const end = Date.now() + 5000;
  let t = await filter.exactTables(id);
  while (!done(t) && Date.now() < end) {
    await sleep(50);
    t = await filter.exactTables(id);
  }
  return t;
}

describe("exact tables that grow with the policy (no /32 or /128 ever answered by an LPM trie)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  const id = `t-cap-${process.pid}`;
  const id2 = `t-cap2-${process.pid}`;

  beforeAll(async () => {
    ctx = await filterSandbox("capy", PORT);
    ({ sb, net, filter } = ctx);
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  it("sizes the small hash from the initial policy", () => {
    expect(exactCapacityFor([])).toBe(4096);
    expect(exactCapacityFor(hosts(10_000))).toBe(32768);
  });

  it("attached with one entry, then 100k pushed by one replace: all in the large exact table, read back whole, enforced", async () => {
    const [a, b] = net.serverIp4;
    await filter.attach(interfaceSpec(id, 71, net.hostIf), policy("allowlist", [allow("100.127.255.1/32")]));
    const small = await filter.exactTables(id);
    expect(small.v4).toMatchObject({ smallCount: 1, usesLarge: false, largeCap: 0, lpmHostCount: 0 });
    const pushed = [...hosts(100_000 - 1), allow(`${a}/32`), ...hosts6(500)];
    await filter.replacePolicy(id, policy("allowlist", pushed));
    const t = await filter.exactTables(id);
    expect(t.v4).toMatchObject({ usesLarge: true, largeCount: 100_000, smallCount: 0, lpmCount: 0, lpmHostCount: 0 });
    expect(t.v4.largeCap).toBeGreaterThanOrEqual(100_000);
    expect(t.v6).toMatchObject({ usesLarge: false, smallCount: 500, lpmHostCount: 0 });
    // Read back from the kernel (DUMP): exactly the pushed set.
    const back = (await filter.inspect(id)).policy.entries.map((e) => formatCidr(e.cidr));
    expect(back.length).toBe(pushed.length);
    expect(new Set(back)).toEqual(new Set(pushed.map((e) => formatCidr(e.cidr))));
    expect(await probe(sb, net.workloadNs, "tcp", a!, { port: PORT })).toBe(true);
    expect(await probe(sb, net.workloadNs, "tcp", b!, { port: PORT, timeoutMs: 600 })).toBe(false);
    // Deleting a /32 from the large table closes it.
    await filter.deleteEntries(id, [parseCidr(`${a}/32`)]);
    expect(await probe(sb, net.workloadNs, "tcp", a!, { port: PORT, timeoutMs: 600 })).toBe(false);
    expect((await filter.exactTables(id)).v4.largeCount).toBe(99_999);
  });

  it("shrinks back lazily after a small replace: the large tables are dropped", async () => {
    const [a, b] = net.serverIp4;
    await filter.replacePolicy(id, policy("allowlist", [allow(`${b}/32`), ...hosts(10)]));
    const t = await until(filter, id, (x) => x.v4.otherLargeCap === 0 && x.v4.largeCap === 0);
    expect(t.v4).toMatchObject({ usesLarge: false, smallCount: 11, largeCap: 0, otherLargeCap: 0, lpmHostCount: 0 });
    expect(t.v6).toMatchObject({ largeCap: 0, otherLargeCap: 0 });
    expect(await probe(sb, net.workloadNs, "tcp", b!, { port: PORT })).toBe(true);
    expect(await probe(sb, net.workloadNs, "tcp", a!, { port: PORT, timeoutMs: 600 })).toBe(false);
  });

  it("upserts (DNS-learned batches) beyond the small hash move to a large table, then grow it", async () => {
    const [a] = net.serverIp4;
    // 4096 entries fill the small hash (both generations share it); the next batches must grow.
    for (let i = 0; i < 6; i++) await filter.upsertEntries(id, hosts(1000, 200_000 + i * 1000));
    let t = await filter.exactTables(id);
    expect(t.v4).toMatchObject({ usesLarge: true, largeCount: 6011, lpmHostCount: 0 });
    const cap = t.v4.largeCap;
    await filter.upsertEntries(id, [...hosts(3 * cap, 300_000), allow(`${a}/32`)]);
    t = await filter.exactTables(id);
    expect(t.v4.largeCap).toBeGreaterThan(cap);
    expect(t.v4).toMatchObject({ usesLarge: true, largeCount: 6011 + 3 * cap + 1, lpmHostCount: 0 });
    expect(await probe(sb, net.workloadNs, "tcp", a!, { port: PORT })).toBe(true);
  });

  it("a table 3/4 full is grown in the idle loop, before a request finds it full", async () => {
    const id3 = `t-cap3-${process.pid}`;
    await filter.attach(interfaceSpec(id3, 73, net.hostIf), policy("allowlist", [allow("100.127.255.1/32")]));
    // 3,200 new addresses in DNS-sized batches: ≥ 3/4 of the 4096-entry small hash, never full.
    for (let i = 0; i < 64; i++) await filter.upsertEntries(id3, hosts(50, 800_000 + i * 50));
    const t = await until(filter, id3, (x) => x.v4.usesLarge);
    expect(t.v4).toMatchObject({ usesLarge: true, largeCount: 3201, lpmHostCount: 0 });
    expect(t.v4.largeCap).toBeGreaterThanOrEqual(2 * 3201);
    await filter.detach(id3);
  });

  it("a restarted loader adopts the large tables from the pins: they keep enforcing, grow and shrink", async () => {
    const [a, b] = net.serverIp4;
    const id4 = `t-cap4-${process.pid}`;
    await filter.detach(id); // one filter on the interface: the probes below are about this one
    await filter.attach(interfaceSpec(id4, 74, net.hostIf), policy("allowlist", [allow("100.127.255.1/32")]));
    await filter.replacePolicy(id4, policy("allowlist", [...hosts(20_000, 900_000), allow(`${a}/32`)]));
    expect((await filter.exactTables(id4)).v4).toMatchObject({ usesLarge: true, largeCount: 20_001 });
    filter.killLoader();
    expect(await probe(sb, net.workloadNs, "tcp", a!, { port: PORT })).toBe(true); // the pins keep enforcing
    await filter.whenReady();
    let t = await filter.exactTables(id4);
    expect(t.v4).toMatchObject({ usesLarge: true, largeCount: 20_001, lpmHostCount: 0 });
    // The new loader writes into the adopted large table, then grows it.
    await filter.upsertEntries(id4, [allow(`${b}/32`)]);
    expect(await probe(sb, net.workloadNs, "tcp", b!, { port: PORT })).toBe(true);
    const cap = t.v4.largeCap;
    await filter.upsertEntries(id4, hosts(3 * cap, 1_000_000));
    t = await filter.exactTables(id4);
    expect(t.v4.largeCap).toBeGreaterThan(cap);
    expect(t.v4).toMatchObject({ usesLarge: true, largeCount: 20_002 + 3 * cap, lpmHostCount: 0 });
    expect(await probe(sb, net.workloadNs, "tcp", a!, { port: PORT })).toBe(true);
    // A small replace shrinks back, the adopted tables dropped too.
    await filter.replacePolicy(id4, policy("allowlist", [allow(`${b}/32`)]));
    t = await until(filter, id4, (x) => x.v4.largeCap === 0 && x.v4.otherLargeCap === 0);
    expect(t.v4).toMatchObject({ usesLarge: false, smallCount: 1, largeCap: 0, otherLargeCap: 0 });
    expect(await probe(sb, net.workloadNs, "tcp", a!, { port: PORT, timeoutMs: 600 })).toBe(false);
    await filter.detach(id4);
  });

  it("nothing is dropped for kept destinations while the tables grow under a ping flood and a TCP stream", async () => {
    const dst = net.serverIp4[0]!;
    const dst6 = net.serverIp6[0]!;
    const keep = [allow(`${dst}/32`), allow(`${dst6}/128`)];
    // (the earlier attachments are detached: one filter on the interface, this test counts its own drops)
    // The workload's kernel sends MLD reports now and then: let them pass, they are not what is counted.
    await filter.attach(interfaceSpec(id2, 72, net.hostIf, { guards: { ...CLOSED_GUARDS, mld: true } }), policy("allowlist", keep));
    const c = echoCollector();
    sb.spawn(net.workloadNs, [process.execPath, fixture("stream-client.mjs"), dst, String(PORT), "2"], { onLine: c.onLine });
    await c.connected;
    let pingOut = "";
    const ping = sb.spawn(net.workloadNs, ["ping", "-n", "-i", "0.002", "-c", "1500", "-W", "1", dst6]);
    ping.stdout!.on("data", (d: Buffer) => (pingOut += d.toString()));
    const exited = new Promise((r) => ping.once("exit", r));
    await sleep(200);
    const before = (await filter.counters([id2])).get(id2)!;
    // Upserts that move the generation small → large and then grow it twice, then replaces that
    // move between large sizes and back to the small hash.
    await filter.upsertEntries(id2, hosts(5000, 400_000));
    await filter.upsertEntries(id2, hosts(20_000, 410_000));
    await filter.upsertEntries(id2, hosts(60_000, 440_000));
    await filter.replacePolicy(id2, policy("allowlist", [...keep, ...hosts(100_000, 500_000)]));
    await filter.replacePolicy(id2, policy("allowlist", [...keep, ...hosts(30_000, 600_000)]));
    await filter.replacePolicy(id2, policy("allowlist", [...keep, ...hosts(100)]));
    await filter.replacePolicy(id2, policy("allowlist", [...keep, ...hosts(100_000, 700_000)]));
    await exited;
    const after = (await filter.counters([id2])).get(id2)!;
    expect(after.blocked - before.blocked, "packets dropped while the tables grew").toBe(0n);
    expect(pingOut).toMatch(/1500 packets transmitted, 1500 received/);
    const ns = c.echoes.map((e) => e.n);
    expect(ns.length).toBeGreaterThan(100);
    expect(ns.every((n, i) => i === 0 || n === ns[i - 1]! + 1)).toBe(true);
    const t = await filter.exactTables(id2);
    expect(t.v4).toMatchObject({ usesLarge: true, largeCount: 100_001, lpmHostCount: 0 });
  });
});
