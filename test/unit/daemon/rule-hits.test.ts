import { afterEach, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import pino from "pino";
import { parseCidr } from "@netfence/proto/parse";
import { AttachmentManager } from "../../../daemon/src/attachments/manager.js";
import { HitsTracker } from "../../../daemon/src/attachments/hits-tracker.js";
import { FakeFilter } from "../../../daemon/src/datapath/fake-filter.js";
import { MemoryStateStore } from "../../../daemon/src/store/state-store.js";
import type { AttachmentPolicy } from "../../../daemon/src/policy/policy.js";
import { FakeDnsServers, RecordingPolicySource, fakeCgroupRoot, learn, policy, silentLogger } from "./fakes.js";

// ListRules and the heartbeat's rule hits over the FakeFilter (which counts like the kernel's
// nf_hits): the join of kernel entries, rule table and counters, and the heartbeat's bounds.
// The kernel itself is proven by test/kernel/datapath/rule-hits.test.ts and test/e2e/rule-hits.test.ts.

const rule = (c: string) => ({ cidr: parseCidr(c), expiresAtMs: null });
const roots: string[] = [];
const managers: AttachmentManager[] = [];
afterEach(async () => {
  for (const m of managers.splice(0)) await m.stop();
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

async function attached(pol: AttachmentPolicy) {
  const cgroupRoot = fakeCgroupRoot("a");
  roots.push(cgroupRoot);
  const filter = new FakeFilter();
  const manager = new AttachmentManager({
    filter,
    policySource: new RecordingPolicySource(pol),
    store: new MemoryStateStore(),
    dnsServers: new FakeDnsServers(),
    logger: silentLogger,
    dns: { listenAddr: "127.0.0.1", portMin: 11000, portMax: 11010 },
    cgroupRoot,
    gcIntervalMs: 0,
    fallbackDaemonId: "nfd-test",
  });
  managers.push(manager);
  await manager.start();
  const v = await manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
  return { manager, filter, id: v.id };
}

describe("ListRules and heartbeat rule hits (FakeFilter)", () => {
  it("lists every rule with its kernel entries and counts, the mode's default, and DNS-learned addresses under their domain rule", async () => {
    const dns = { mode: "allowlist" as const, allowDomains: [{ domain: "example.com", includeSubdomains: true }], denyDomains: [], upstreams: [] };
    const { manager, filter, id } = await attached(policy({ allowCidrs: [rule("10.0.0.0/8")], denyCidrs: [rule("10.9.9.9")], dns }));
    await learn(manager, id, "www.example.com", ["192.0.2.7"], 300);
    for (let i = 0; i < 3; i++) filter.sendPacket(id, "10.1.2.3");
    filter.sendPacket(id, "10.9.9.9");
    filter.sendPacket(id, "192.0.2.7");
    filter.sendPacket(id, "198.51.100.1");
    const v = await manager.listRules(id);
    const by = new Map(v.rules.map((r) => [r.rule, r]));
    expect(by.get("allow-cidr 10.0.0.0/8")).toMatchObject({ kind: "cidr", action: "allow", kernelEntries: 1, packets: 3n, inDaemon: true });
    expect(by.get("deny-cidr 10.9.9.9/32")).toMatchObject({ kind: "cidr", action: "deny", kernelEntries: 1, packets: 1n });
    expect(by.get("allow-domain *.example.com")).toMatchObject({ kind: "domain", kernelEntries: 1, prefixes: ["192.0.2.7/32"], packets: 1n });
    expect(by.get("default-deny")).toMatchObject({ kind: "reserved", action: "deny", packets: 1n });
    expect(v.mode).toBe("allowlist");
    expect(v.overflowedRules).toBe(0);
  });

  it("heartbeats carry only the rules whose count moved, at most `limit`, the biggest movers first", async () => {
    const allow = Array.from({ length: 5 }, (_, i) => rule(`10.0.${i}.0/24`));
    const { manager, filter, id } = await attached(policy({ allowCidrs: allow }));
    const registry = (manager as unknown as { core: { registry: ConstructorParameters<typeof HitsTracker>[0] } }).core.registry;
    const tracker = new HitsTracker(registry, filter, pino({ level: "silent" }), 2);
    for (let i = 0; i < 5; i++) for (let n = 0; n <= i; n++) filter.sendPacket(id, `10.0.${i}.1`);
    const first = (await tracker.collect()).get(id)!;
    expect(first.hits.map((h) => [h.rule, h.packets])).toEqual([
      ["allow-cidr 10.0.4.0/24", 5n],
      ["allow-cidr 10.0.3.0/24", 4n],
    ]);
    expect(first.omitted).toBe(3);
    const second = (await tracker.collect()).get(id)!;
    expect(second.hits.map((h) => h.rule)).toEqual(["allow-cidr 10.0.2.0/24", "allow-cidr 10.0.1.0/24"]);
    const third = (await tracker.collect()).get(id)!;
    expect(third).toEqual({ hits: [expect.objectContaining({ rule: "allow-cidr 10.0.0.0/24", packets: 1n })], omitted: 0 });
    expect((await tracker.collect()).get(id)).toEqual({ hits: [], omitted: 0 }); // nothing moved
    filter.sendPacket(id, "10.0.3.9");
    expect((await tracker.collect()).get(id)!.hits.map((h) => [h.rule, h.packets])).toEqual([["allow-cidr 10.0.3.0/24", 5n]]);
  });

  it("a recycled rule id is zeroed in the kernel before the replace that reuses it", async () => {
    const { manager, filter, id } = await attached(policy({ allowCidrs: [rule("10.0.0.0/8"), rule("192.0.2.0/24")] }));
    filter.sendPacket(id, "192.0.2.1");
    const gone = (await manager.listRules(id)).rules.find((r) => r.rule === "allow-cidr 192.0.2.0/24")!.ruleId;
    const bulk = (allowCidrs: string[]) => manager.applyCommand(id, { kind: "bulk-update", mode: "allowlist", audit: false, allowCidrs: allowCidrs.map(rule), denyCidrs: [], dns: null });
    await bulk(["10.0.0.0/8"]); // replace N: the rule goes, its id is quarantined (generation N-1 still has it)
    expect(filter.clearedHits).toEqual([]);
    await bulk(["10.0.0.0/8", "203.0.113.0/24"]); // replace N+1: N-1 retired; the id is zeroed first, not reused yet
    expect(filter.clearedHits).toEqual([{ id, ruleIds: [gone] }]);
    expect((await manager.listRules(id)).rules.find((r) => r.rule === "allow-cidr 203.0.113.0/24")!.ruleId).not.toBe(gone);
    await bulk(["10.0.0.0/8", "203.0.113.0/24", "198.51.100.0/24"]);
    const rules = (await manager.listRules(id)).rules;
    const reused = rules.find((r) => r.ruleId === gone)!;
    expect(reused.rule).toBe("allow-cidr 198.51.100.0/24");
    expect(reused.packets).toBe(0n);
  });
});
