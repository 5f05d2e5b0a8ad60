import { afterEach, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import { formatCidr, parseCidr, parseRuleScope, type RuleScopeInput } from "@netfence/proto/parse";
import { AttachmentManager } from "../../../daemon/src/attachments/manager.js";
import { FakeBpffs, FakeFilter } from "../../../daemon/src/datapath/fake-filter.js";
import { MemoryStateStore, type StateStore } from "../../../daemon/src/store/state-store.js";
import type { AttachmentPolicy, CidrRule } from "../../../daemon/src/policy/policy.js";
import type { FilterPolicy } from "../../../daemon/src/policy/compiled.js";
import { PolicyState } from "../../../daemon/src/policy/policy-state.js";
import { restoreRuleIds } from "../../../daemon/src/attachments/rule-ids-restore.js";
import { FakeDnsServers, RecordingPolicySource, fakeCgroupRoot, policy, silentLogger } from "./fakes.js";

// Issue 15 through the attachment manager and the FakeFilter (the driver boundary): what reaches
// the driver (FilterEntry.scoped, keepEstablished), and what a daemon restart restores — scopes,
// keep mode and the scoped rules' ids (their hit counters). The kernel's own enforcement of scoped
// entries is lanes K/S's (test/e2e/scoped-rules.test.ts runs it end to end on the merged tree).

const T0 = 1_700_000_000_000;
const roots: string[] = [];
const managers: AttachmentManager[] = [];
afterEach(async () => {
  for (const m of managers.splice(0)) await m.stop();
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

const rule = (c: string, scope?: RuleScopeInput): CidrRule => {
  const s = parseRuleScope(scope);
  return s === undefined ? { cidr: parseCidr(c), expiresAtMs: null } : { cidr: parseCidr(c), expiresAtMs: null, scope: s };
};

async function rig(pol: AttachmentPolicy, bpffs: FakeBpffs, store: StateStore, cgroupRoot: string) {
  const filter = new FakeFilter(bpffs);
  filter.now = () => T0;
  // What the driver is given as whole policies (attach, replace).
  const policies: FilterPolicy[] = [];
  const attach = filter.attach.bind(filter);
  const replace = filter.replacePolicy.bind(filter);
  filter.attach = (spec, p) => (policies.push(p), attach(spec, p));
  filter.replacePolicy = (id, p) => (policies.push(p), replace(id, p));
  const manager = new AttachmentManager({
    filter, policySource: new RecordingPolicySource(pol), store, dnsServers: new FakeDnsServers(), logger: silentLogger,
    dns: { listenAddr: "127.0.0.1", portMin: 11000, portMax: 11010 }, cgroupRoot, now: () => T0, gcIntervalMs: 0, fallbackDaemonId: "nfd-test",
  });
  managers.push(manager);
  await manager.start();
  return { manager, filter, policies };
}

describe("scoped rules and keep mode through the manager", () => {
  it("reach the driver as FilterEntry.scoped and keepEstablished, and survive a restart with their rule ids", async () => {
    const bpffs = new FakeBpffs();
    const store = new MemoryStateStore();
    const cgroupRoot = fakeCgroupRoot("a");
    roots.push(cgroupRoot);
    const pol = policy({
      established: "keep",
      allowCidrs: [rule("10.0.0.0/24"), rule("10.0.0.0/24", { protocols: ["tcp"], ports: [443], users: [33] })],
      denyCidrs: [rule("10.0.0.0/24", { protocols: ["udp"] })],
    });
    const first = await rig(pol, bpffs, store, cgroupRoot);
    const { id } = await first.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    const e = first.filter.entries(id).get("10.0.0.0/24")!;
    expect([e.allow, e.deny, e.scoped?.length]).toEqual([true, false, 2]);
    expect(first.policies.map((p) => p.keepEstablished)).toEqual([true]);
    expect(bpffs.pinned.get(id)).toBeDefined();
    // A scoped rule added by command: its own id; the unscoped rule of the prefix stays.
    await first.manager.applyCommand(id, { kind: "allow-cidr", rule: rule("10.0.0.0/24", { protocols: ["icmp"] }) });
    const before = first.filter.entries(id).get("10.0.0.0/24")!;
    expect(before.scoped).toHaveLength(3);
    const ids = before.scoped!.map((s) => s.ruleId);
    expect(new Set([before.ruleId, ...ids]).size).toBe(4);
    await first.manager.persist();
    // `netfenced rules` (ListRules) lists each scoped rule as a rule of its own (the text is the rules
    // view's: lane S formats it; the rule-id key is "<kind>-cidr <prefix> <scope rule key>").
    const listed = (await first.manager.listRules(id)).rules;
    expect(listed.filter((r) => /^allow-cidr 10\.0\.0\.0\/24 tcp\/443 users[ =]33$/.test(r.rule)).map((r) => r.action)).toEqual(["allow"]);
    expect(listed.filter((r) => /^deny-cidr 10\.0\.0\.0\/24 udp$/.test(r.rule)).map((r) => r.action)).toEqual(["deny"]);
    // What a restart does first: each rule takes back the id its kernel entries carry.
    const st = new PolicyState(first.manager.policyOf(id));
    await restoreRuleIds(first.filter, id, st, T0);
    expect(before.scoped!.map((s) => st.ruleIds.keyOf(s.ruleId)).sort()).toEqual([
      "allow-cidr 10.0.0.0/24 icmp",
      "allow-cidr 10.0.0.0/24 tcp/443 users=33",
      "deny-cidr 10.0.0.0/24 udp",
    ]);

    const second = await rig(policy(), bpffs, store, cgroupRoot);
    const restored = second.manager.policyOf(id);
    expect(restored.established).toBe("keep");
    expect(restored.allowCidrs.map((r) => r.scope?.protocols ?? null)).toEqual(expect.arrayContaining([null, [6], [1]]));
    expect(restored.allowCidrs.find((r) => r.scope?.protocols[0] === 6)!.scope!.users).toEqual([{ id: 33, name: null }]);
    // The next full replace (one more rule: not a restatement) compiles the prefix with the same ids
    // (the counters stay with their rules).
    const calls = second.filter.calls.length;
    const allowCidrs = [...restored.allowCidrs, rule("10.0.1.0/24")];
    await second.manager.applyCommand(id, { kind: "bulk-update", mode: "allowlist", audit: false, allowCidrs, denyCidrs: restored.denyCidrs, dns: null, established: "keep" });
    expect(second.filter.calls.slice(calls).map((c) => c.method)).toContain("replacePolicy");
    expect(second.policies.at(-1)!.keepEstablished).toBe(true);
    const after = second.filter.entries(id).get("10.0.0.0/24")!;
    expect(after.ruleId).toBe(before.ruleId);
    expect(after.scoped!.map((s) => s.ruleId).sort()).toEqual([...ids].sort());
    // RemoveCIDR removes every rule of the prefix.
    await second.manager.applyCommand(id, { kind: "remove-cidr", cidr: parseCidr("10.0.0.0/24") });
    expect([...second.filter.entries(id).keys()].map((k) => k)).not.toContain(formatCidr(parseCidr("10.0.0.0/24")));
    expect(second.manager.policyOf(id).allowCidrs.map((r) => formatCidr(r.cidr))).toEqual(["10.0.1.0/24"]);
  });
});
