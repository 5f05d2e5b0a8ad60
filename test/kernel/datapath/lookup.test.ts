import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { parseCidr } from "@netfence/proto/parse";
import { decide, IPPROTO } from "../../../daemon/src/explain/verdict.js";
import { type FilterSandbox, allow, closeFilterSandbox, deny, filterSandbox, interfaceSpec, policy, sleep } from "../../helpers/kernel-filter-fixture.js";
import { probe, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";

// NF_OP_LOOKUP (explain) against the real kernel, on the map layouts a daemon-level test does not
// reach: an exact entry answered by the LARGE table, expired entries the lookup must step over
// (an expired /32 in the exact hash, an expired prefix in the LPM trie, both not yet collected),
// and the host-wide protected and protected-deny sets with a port scope. For each destination the
// verdict decided from LOOKUP's answer must be what a real TCP connect from the workload saw.

const PORT = 7137;

describe("LOOKUP reads the kernel's answer for one destination", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  const id = `t-lookup-${process.pid}`;

  beforeAll(async () => {
    ctx = await filterSandbox("nflk", PORT);
    ({ sb, net, filter } = ctx);
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  const s = (i: number) => net.serverIp4[i]!;
  const lookup = (ip: string) => {
    const c = parseCidr(ip);
    return filter.lookup(id, c.family, c.addr);
  };
  /** The verdict from LOOKUP for ip:PORT/tcp and what a real connect saw. */
  const both = async (ip: string) => {
    const c = parseCidr(ip);
    const k = await lookup(ip);
    const v = decide(k, { family: c.family, addr: c.addr, protocol: IPPROTO.tcp, port: PORT });
    return { k, v, reached: await probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 700 }) };
  };

  it("an exact entry in the large table; an address with no entry", async () => {
    // Attached small (its small exact hash is sized for that), then 6000 other /32s: more than the
    // small hash holds, so the new generation uses its large table.
    await filter.attach(interfaceSpec(id, 31, net.hostIf), policy("allowlist", [allow(`${s(0)}/32`)]));
    const many = Array.from({ length: 6000 }, (_, i) => allow(`10.77.${i >> 8}.${i & 255}/32`));
    await filter.replacePolicy(id, policy("allowlist", [...many, allow(`${s(0)}/32`)]));
    expect((await filter.exactTables(id)).v4.usesLarge).toBe(true);
    const hit = await both(s(0));
    expect(hit.k.match).toMatchObject({ cidr: `${s(0)}/32`, allow: true, deny: false, table: "large-exact", expiresAtMs: null });
    expect({ verdict: hit.v.verdict, reason: hit.v.reason, reached: hit.reached }).toEqual({ verdict: "allowed", reason: "allow-cidr", reached: true });
    const miss = await both(s(1));
    expect(miss.k.match).toBeNull();
    expect({ verdict: miss.v.verdict, reason: miss.v.reason, reached: miss.reached }).toEqual({ verdict: "blocked", reason: "not-in-allowlist", reached: false });
    expect(miss.k).toMatchObject({ mode: "allowlist", audit: false });
  });

  it("expired entries not yet collected are stepped over, exactly as packets do, down to a shorter live prefix", async () => {
    const sub = net.subnet4;
    const soon = Date.now() + 1500;
    // .10-.19 are the servers: s(3) = .13 has an exact allow with a TTL; .16/28 (s(6)..s(9)) an LPM allow
    // with a TTL; the whole .0/25 a permanent deny underneath.
    await filter.replacePolicy(id, policy("allowlist", [allow(`${s(3)}/32`, soon), allow(`${sub}.16/28`, soon), deny(`${sub}.0/25`), allow(`${s(0)}/32`)]));
    const live = await both(s(3));
    expect(live.k.match).toMatchObject({ cidr: `${s(3)}/32`, table: "small-exact" });
    expect(Math.abs(live.k.match!.expiresAtMs! - soon)).toBeLessThan(1000);
    expect([live.v.verdict, live.reached]).toEqual(["allowed", true]);
    expect((await both(s(7))).k.match).toMatchObject({ cidr: `${sub}.16/28`, table: "lpm" });
    await sleep(Math.max(0, soon - Date.now()) + 300);
    for (const ip of [s(3), s(7)]) {
      const gone = await both(ip);
      expect(gone.k.match, ip).toMatchObject({ cidr: `${sub}.0/25`, deny: true, table: "lpm" });
      expect(gone.k.expiredSkipped, ip).toBe(1);
      expect({ ip, verdict: gone.v.verdict, reason: gone.v.reason, reached: gone.reached }).toEqual({ ip, verdict: "blocked", reason: "deny-cidr", reached: false });
    }
  });

  it("the protected set (scoped to tcp/PORT) beats the deny; the protected-deny set beats an allow", async () => {
    await filter.setProtected([
      { cidr: parseCidr(`${s(4)}/32`), protocol: IPPROTO.tcp, port: PORT, action: "allow" },
      { cidr: parseCidr(`${s(0)}/32`), protocol: 0, port: 0, action: "deny" },
    ]);
    try {
      const p = await both(s(4));
      expect(p.k.protectedAllow).toEqual({ prefixLen: 32, protocol: IPPROTO.tcp, port: PORT });
      expect({ verdict: p.v.verdict, reason: p.v.reason, step: p.v.step, reached: p.reached }).toEqual({ verdict: "allowed", reason: "protected", step: "f", reached: true });
      // Another port of the same address is not protected: the deny decides (explained, not sent).
      const c = parseCidr(s(4));
      expect(decide(p.k, { family: 4, addr: c.addr, protocol: IPPROTO.tcp, port: PORT + 1 }).reason).toBe("deny-cidr");
      const d = await both(s(0));
      expect(d.k.protectedDeny).toEqual({ prefixLen: 32, protocol: 0, port: 0 });
      expect(d.k.match).toMatchObject({ allow: true });
      expect({ verdict: d.v.verdict, reason: d.v.reason, step: d.v.step, reached: d.reached }).toEqual({ verdict: "blocked", reason: "protected-deny", step: "g", reached: false });
    } finally {
      await filter.setProtected([]);
    }
  });

  it("audit mode: a deny is reported as audited and the packet really passes", async () => {
    await filter.setMode(id, "allowlist", true);
    const a = await both(s(5));
    expect({ verdict: a.v.verdict, reason: a.v.reason, reached: a.reached }).toEqual({ verdict: "audited", reason: "deny-cidr", reached: true });
    await filter.setMode(id, "allowlist", false);
  });

  it("costs one loader round trip: 500 lookups in a row (printed, not asserted: the machine is shared)", async () => {
    const addr = parseCidr(s(7)).addr;
    const t0 = performance.now();
    for (let i = 0; i < 500; i++) await filter.lookup(id, 4, addr);
    const perCall = (performance.now() - t0) / 500;
    console.log(`LOOKUP: ${perCall.toFixed(3)} ms per call (500 sequential, daemon ⇄ loader ⇄ kernel maps)`);
    expect((await filter.lookup(id, 4, addr)).match).not.toBeNull();
  });

  it("an unknown attachment is NOT_FOUND", async () => {
    await expect(filter.lookup("t-nosuch", 4, parseCidr("10.0.0.1").addr)).rejects.toMatchObject({ code: "NOT_FOUND" });
  });
});
