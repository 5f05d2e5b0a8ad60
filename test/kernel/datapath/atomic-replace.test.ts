import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { CLOSED_GUARDS, type FilterEntry } from "../../../daemon/src/datapath/filter.js";
import { type FilterSandbox, allow, closeFilterSandbox, deny, echoCollector, filterSandbox, interfaceSpec, policy, sleep } from "../../helpers/kernel-filter-fixture.js";
import { fixture, probe, type SandboxNetwork, type Sandbox } from "../../helpers/sandbox.js";

const PORT = 7104;

/** n filler entries in 100.64.0.0/10 (never used by the sandbox), different for each round. */
function filler(round: number, n: number): FilterEntry[] {
  return Array.from({ length: n }, (_, i) => {
    const v = round * n + i;
    return i % 2 ? allow(`100.${64 + ((v >> 16) & 63)}.${(v >> 8) & 255}.${v & 255}/32`) : deny(`100.${64 + ((v >> 14) & 63)}.${(v >> 6) & 255}.${(v & 63) << 2}/30`);
  });
}

describe("atomic replace: no packet to a destination allowed before and after is ever dropped", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  const id = `t-atom-${process.pid}`;

  beforeAll(async () => {
    ctx = await filterSandbox("atom", PORT);
    ({ sb, net, filter } = ctx);
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  it("30 full replacements of a 5k-entry policy under a ping flood and a TCP stream: zero drops", async () => {
    const dst = net.serverIp4[0]!;
    const dst6 = net.serverIp6[0]!;
    // The workload's kernel sends MLD reports now and then; without the mld guard they are (rightly)
    // dropped, which is not what this test counts.
    await filter.attach(interfaceSpec(id, 31, net.hostIf, { guards: { ...CLOSED_GUARDS, mld: true } }), policy("allowlist", [allow(`${dst}/32`), allow(`${net.subnet6}::/64`), ...filler(0, 5000)]));
    const c = echoCollector();
    sb.spawn(net.workloadNs, [process.execPath, fixture("stream-client.mjs"), dst, String(PORT), "2"], { onLine: c.onLine });
    await c.connected;
    let pingOut = "";
    const ping = sb.spawn(net.workloadNs, ["ping", "-n", "-i", "0.002", "-c", "2500", "-W", "1", dst6]);
    ping.stdout!.on("data", (d: Buffer) => (pingOut += d.toString()));
    const exited = new Promise((r) => ping.once("exit", r));
    await sleep(200);
    const before = (await filter.counters([id])).get(id)!;
    for (let round = 1; round <= 30; round++) {
      // The allowed destinations move between the exact table and the LPM trie on every round.
      const keep = round % 2 ? [allow(`${net.subnet4}.0/28`), allow(`${dst6}/128`)] : [allow(`${dst}/32`), allow(`${net.subnet6}::/64`)];
      await filter.replacePolicy(id, policy("allowlist", [...keep, ...filler(round, 5000)]));
    }
    await exited;
    const after = (await filter.counters([id])).get(id)!;
    expect(after.blocked - before.blocked, "packets dropped during the replacements").toBe(0n);
    expect(after.allowed - before.allowed).toBeGreaterThan(2500n);
    expect(pingOut).toMatch(/2500 packets transmitted, 2500 received/);
    // The TCP stream kept flowing in order.
    const ns = c.echoes.map((e) => e.n);
    expect(ns.length).toBeGreaterThan(100);
    expect(ns.every((n, i) => i === 0 || n === ns[i - 1]! + 1)).toBe(true);
  });

  it("a replace that fails validation changes nothing", async () => {
    const bad = { ...allow("10.0.0.0/8"), cidr: { family: 4 as const, addr: new Uint8Array(4), prefixLen: 33 } };
    await expect(filter.replacePolicy(id, policy("block-all", [bad]))).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    const before = (await filter.counters([id])).get(id)!;
    await sleep(50);
    const r = await sb.exec(net.workloadNs, ["ping", "-n", "-c", "3", "-i", "0.1", "-W", "1", net.serverIp6[1]!], { allowFail: true });
    expect(r.code).toBe(0);
    expect((await filter.counters([id])).get(id)!.blocked).toBe(before.blocked);
  });

  // The third replace fills the generation the first one used. Whatever the first policy put there
  // (a /32 in the exact hash, a prefix in the LPM trie, v6) must be gone by then: a key left behind
  // would re-open an address two policies later. Back to back (the REPLACE itself waits for the
  // grace period and clears) and with a pause (the idle loop's deferred grace period and clear).
  for (const pauseMs of [0, 1500]) {
    it(`a policy two replaces ago never comes back (${pauseMs ? "idle loop clears" : "back to back"})`, async () => {
      const [a, b, c] = net.serverIp4;
      const inTrie = net.serverIp4[7]!; // .17, inside the /28 below
      const v6 = net.serverIp6[0]!;
      await filter.replacePolicy(id, policy("allowlist", [allow(`${a}/32`), allow(`${net.subnet4}.16/28`), allow(`${net.subnet6}::/64`), ...filler(40 + pauseMs, 1000)]));
      expect(await probe(sb, net.workloadNs, "tcp", a!, { port: PORT })).toBe(true);
      expect(await probe(sb, net.workloadNs, "tcp", inTrie, { port: PORT })).toBe(true);
      expect(await probe(sb, net.workloadNs, "tcp", v6, { port: PORT })).toBe(true);
      await filter.replacePolicy(id, policy("allowlist", [allow(`${b}/32`), ...filler(41 + pauseMs, 1000)]));
      if (pauseMs) await sleep(pauseMs);
      await filter.replacePolicy(id, policy("allowlist", [allow(`${c}/32`)]));
      expect(await probe(sb, net.workloadNs, "tcp", c!, { port: PORT })).toBe(true);
      for (const gone of [a!, b!, inTrie, v6]) expect(await probe(sb, net.workloadNs, "tcp", gone, { port: PORT, timeoutMs: 600 }), gone).toBe(false);
      const back = (await filter.inspect(id)).policy.entries.map((e) => e.cidr);
      expect(back.length).toBe(1);
    });
  }
});
