import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import type { RuleHitCount } from "../../../daemon/src/datapath/filter.js";
import { HITS_OVERFLOW, RULE_ID } from "../../../daemon/src/datapath/hits-wire.js";
import { allow, closeFilterSandbox, deny, filterSandbox, interfaceSpec, policy, type FilterSandbox } from "../../helpers/kernel-filter-fixture.js";
import type { Sandbox, SandboxNetwork } from "../../helpers/sandbox.js";

// Issue 14: per-rule hit counters in the kernel (nf_hits), counted by the data path against the
// rule id of the entry (or the reserved rule) that decided each packet. Real packets: ICMP echo
// requests from the workload namespace, exactly N of them per destination (ping -c N), so the
// counts can be exact: ARP and IPv6 neighbour discovery count against "always-allowed", never
// against a policy rule.

const PORT = 7141;

describe("rule hit counts in the kernel (real packets)", () => {
  let ctx: FilterSandbox | undefined;
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  const id = `t-hits-${process.pid}`;
  const ALLOW_ID = 100;
  const DENY_ID = 101;
  const PREFIX_ID = 102;

  beforeAll(async () => {
    ctx = await filterSandbox("hits", PORT);
    ({ sb, net, filter } = ctx);
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  /** Sends exactly `n` ICMP echo requests from the workload to `ip` (replies or not). */
  const ping = async (ip: string, n: number): Promise<void> => {
    const r = await sb.exec(net.workloadNs, ["ping", "-n", "-q", "-c", String(n), "-i", "0.01", "-W", "1", ip], { allowFail: true, timeoutMs: 15_000 });
    expect(r.stdout).toMatch(new RegExp(`${n} packets transmitted`));
  };
  const hitsOf = async (): Promise<Map<number, RuleHitCount>> => new Map((await filter.ruleHits(id)).map((h) => [h.ruleId, h]));
  const packets = (m: Map<number, RuleHitCount>, rule: number): bigint => m.get(rule)?.packets ?? 0n;

  it("counts each packet against the rule that decided it: allow entry, deny entry, prefix, the allowlist default", async () => {
    const [a, b, c, d] = net.serverIp4;
    await filter.attach(
      interfaceSpec(id, 41, net.hostIf),
      policy("allowlist", [
        { ...allow(`${a}/32`), ruleId: ALLOW_ID },
        { ...deny(`${b}/32`), ruleId: DENY_ID },
        { ...allow(`${net.subnet4}.0/24`), ruleId: PREFIX_ID },
        { ...deny(`${d}/32`), ruleId: DENY_ID }, // two entries of one rule count together
      ]),
    );
    const t0 = Date.now();
    const before = await hitsOf();
    expect(packets(before, ALLOW_ID)).toBe(0n);
    await ping(a!, 20);
    await ping(b!, 15);
    await ping(c!, 7); // the /24 prefix
    await ping(d!, 5);
    await ping(net.serverIp6[0]!, 4); // no v6 rule: the allowlist default (deny)
    const after = await hitsOf();
    expect(packets(after, ALLOW_ID)).toBe(20n);
    expect(packets(after, DENY_ID)).toBe(20n);
    expect(packets(after, PREFIX_ID)).toBe(7n);
    // At least: the workload's own IPv6 chatter (MLD reports, not enabled here) is denied by the default too.
    expect(packets(after, RULE_ID.DEFAULT_DENY) - packets(before, RULE_ID.DEFAULT_DENY)).toBeGreaterThanOrEqual(4n);
    expect(packets(after, RULE_ID.ALWAYS_ALLOWED)).toBeGreaterThan(0n); // ARP / neighbour discovery
    const last = after.get(ALLOW_ID)!.lastHitMs;
    expect(last).toBeGreaterThanOrEqual(t0 - 1000);
    expect(last).toBeLessThanOrEqual(Date.now() + 1000);
  });

  it("counts are kept across a replace that keeps the rule ids, and follow real traffic after it", async () => {
    const [a, b] = net.serverIp4;
    await filter.replacePolicy(id, policy("allowlist", [{ ...allow(`${a}/32`), ruleId: ALLOW_ID }, { ...deny(`${b}/32`), ruleId: DENY_ID }]));
    const kept = await hitsOf();
    expect(packets(kept, ALLOW_ID)).toBe(20n);
    await ping(a!, 10);
    expect(packets(await hitsOf(), ALLOW_ID)).toBe(30n);
  });

  it("mode block-all and audit mode count against their reserved rules / the deciding rule", async () => {
    const [a, b] = net.serverIp4;
    await filter.setMode(id, "block-all", false);
    const before = await hitsOf();
    await ping(a!, 6);
    const mid = await hitsOf();
    expect(packets(mid, RULE_ID.BLOCK_ALL) - packets(before, RULE_ID.BLOCK_ALL)).toBe(6n);
    expect(packets(mid, ALLOW_ID)).toBe(packets(before, ALLOW_ID));
    // Audit: the deny rule still counts what it would have dropped (and the packets pass).
    await filter.setMode(id, "allowlist", true);
    await ping(b!, 3);
    expect(packets(await hitsOf(), DENY_ID) - packets(mid, DENY_ID)).toBe(3n);
    await filter.setMode(id, "allowlist", false);
  });

  it("HITS_CLEAR zeroes a recycled id; an id beyond the capacity counts in the overflow bucket", async () => {
    const [a, c] = net.serverIp4;
    await filter.clearRuleHits(id, [ALLOW_ID]);
    expect(packets(await hitsOf(), ALLOW_ID)).toBe(0n);
    await filter.replacePolicy(id, policy("allowlist", [{ ...allow(`${a}/32`), ruleId: ALLOW_ID }, { ...allow(`${c}/32`), ruleId: 50_000 }]));
    await ping(a!, 2);
    await ping(c!, 3);
    const h = await hitsOf();
    expect(packets(h, ALLOW_ID)).toBe(2n);
    expect(packets(h, HITS_OVERFLOW)).toBe(3n);
    // A partial read (ids below `upto` and the overflow bucket) sees the same counts.
    const partial = new Map((await filter.ruleHits(id, ALLOW_ID + 1)).map((x) => [x.ruleId, x.packets]));
    expect(partial.get(ALLOW_ID)).toBe(2n);
    expect(partial.get(HITS_OVERFLOW)).toBe(3n);
    expect(partial.has(PREFIX_ID)).toBe(false);
    // Zeroing every id at once (batched in the loader; what a restart does when ids cannot be restored).
    await filter.clearRuleHits(id, Array.from({ length: HITS_OVERFLOW + 1 }, (_, i) => i));
    expect(await filter.ruleHits(id)).toEqual([]);
    await ping(a!, 1);
    expect([...(await hitsOf()).values()].filter((x) => x.ruleId >= RULE_ID.FIRST).map((x) => [x.ruleId, x.packets])).toEqual([[ALLOW_ID, 1n]]);
  });
});
