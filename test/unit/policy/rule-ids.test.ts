import { describe, expect, it } from "vitest";
import { formatCidr, parseCidr } from "@netfence/proto/parse";
import { PolicyState } from "../../../daemon/src/policy/policy-state.js";
import { KERNEL_RULE_ID_LIMITS, RuleIds, learnedRuleKey } from "../../../daemon/src/policy/rule-ids.js";
import { EMPTY_DNS_POLICY, type AttachmentPolicy, type DnsPolicy } from "../../../daemon/src/policy/policy.js";
import { planCommand } from "../../../daemon/src/plan/command-plan.js";
import { HITS_OVERFLOW, RULE_ID } from "../../../daemon/src/datapath/hits-wire.js";
import type { FilterPolicy } from "../../../daemon/src/policy/compiled.js";

const NOW = 1_000_000;
const rule = (c: string) => ({ cidr: parseCidr(c), expiresAtMs: null });
const policy = (allow: string[], deny: string[] = [], dns: DnsPolicy = EMPTY_DNS_POLICY): AttachmentPolicy => ({
  mode: "allowlist",
  audit: false,
  allowCidrs: allow.map(rule),
  denyCidrs: deny.map(rule),
  dns,
});
const idsOf = (p: FilterPolicy): Record<string, number> => Object.fromEntries(p.entries.map((e) => [formatCidr(e.cidr), e.ruleId ?? -1]));

/** Applies a BulkUpdate's plan (as the command applier does) and returns the policy it installs. */
function bulk(st: PolicyState, allow: string[], deny: string[] = [], dns: DnsPolicy | null = null): FilterPolicy {
  const plan = planCommand(st, { kind: "bulk-update", mode: "allowlist", audit: false, allowCidrs: allow.map(rule), denyCidrs: deny.map(rule), dns }, NOW);
  plan.commit();
  if (plan.op.kind !== "replace") throw new Error(`expected a replace, got ${plan.op.kind}`);
  return plan.op.policy;
}

describe("rule ids (issue 14)", () => {
  it("the kernel limits match netfence.h as mirrored in hits-wire.ts", () => {
    expect(KERNEL_RULE_ID_LIMITS).toEqual({ first: RULE_ID.FIRST, overflow: HITS_OVERFLOW });
  });

  it("gives each rule its own id from NF_RULE_FIRST; an entry carries its deciding rule's (deny beats allow)", () => {
    const st = new PolicyState(policy(["10.0.0.0/8", "192.0.2.0/24"], ["10.0.0.0/8", "198.51.100.7/32"]));
    const ids = idsOf(st.compile(NOW));
    expect(new Set(Object.values(ids)).size).toBe(3);
    for (const id of Object.values(ids)) expect(id).toBeGreaterThanOrEqual(RULE_ID.FIRST);
    expect(ids["10.0.0.0/8"]).toBe(st.ruleIds.idFor("deny-cidr 10.0.0.0/8"));
    expect(ids["192.0.2.0/24"]).toBe(st.ruleIds.idFor("allow-cidr 192.0.2.0/24"));
    expect(ids["198.51.100.7/32"]).toBe(st.ruleIds.idFor("deny-cidr 198.51.100.7/32"));
  });

  it("a BulkUpdate restating a rule keeps its id; a new rule gets a new one", () => {
    const st = new PolicyState(policy(["10.0.0.0/8", "192.0.2.0/24"]));
    const before = idsOf(st.compile(NOW));
    const after = idsOf(bulk(st, ["10.0.0.0/8", "192.0.2.0/24", "203.0.113.0/24"]));
    expect(after["10.0.0.0/8"]).toBe(before["10.0.0.0/8"]);
    expect(after["192.0.2.0/24"]).toBe(before["192.0.2.0/24"]);
    expect(Object.values(before)).not.toContain(after["203.0.113.0/24"]);
  });

  it("a removed rule's id is recycled only after the next replace retired it, and must be zeroed first", () => {
    const st = new PolicyState(policy(["10.0.0.0/8", "192.0.2.0/24"]));
    const gone = idsOf(st.compile(NOW))["192.0.2.0/24"]!;
    bulk(st, ["10.0.0.0/8"]); // replace N: 192.0.2.0/24 gone, its id quarantined (generation N-1 still has it)
    expect(st.ruleIds.takeDirty()).toEqual([]);
    const n1 = idsOf(bulk(st, ["10.0.0.0/8", "203.0.113.0/24"])); // replace N+1: not reused yet
    expect(n1["203.0.113.0/24"]).not.toBe(gone);
    expect(st.ruleIds.takeDirty()).toEqual([gone]); // zeroed by the caller before replace N+1 is written
    const n2 = idsOf(bulk(st, ["10.0.0.0/8", "203.0.113.0/24", "198.51.100.0/24"]));
    expect(n2["198.51.100.0/24"]).toBe(gone);
    expect(n2["203.0.113.0/24"]).toBe(n1["203.0.113.0/24"]);
  });

  it("a DNS-learned address carries its domain rule's id (the most specific allow rule), fixed while the name is learned", () => {
    const dns: DnsPolicy = {
      mode: "allowlist",
      allowDomains: [
        { domain: "example.com", includeSubdomains: true },
        { domain: "api.example.com", includeSubdomains: false },
      ],
      denyDomains: [],
      upstreams: [],
    };
    expect(learnedRuleKey(dns, "www.example.com.")).toBe("allow-domain example.com");
    expect(learnedRuleKey(dns, "api.example.com")).toBe("allow-domain api.example.com");
    expect(learnedRuleKey(dns, "other.org")).toBe("dns-allowlist");
    const st = new PolicyState(policy([], [], dns));
    st.learned.add("www.example.com", parseCidr("192.0.2.10"), NOW + 60_000);
    st.learned.add("api.example.com", parseCidr("192.0.2.11"), NOW + 60_000);
    const ids = idsOf(st.compile(NOW));
    expect(ids["192.0.2.10/32"]).toBe(st.ruleIds.idFor("allow-domain example.com"));
    expect(ids["192.0.2.11/32"]).toBe(st.ruleIds.idFor("allow-domain api.example.com"));
    // An explicit CIDR rule on the same address decides it instead.
    const withRule = idsOf(bulk(st, ["192.0.2.10/32"], [], null));
    expect(withRule["192.0.2.10/32"]).toBe(st.ruleIds.idFor("allow-cidr 192.0.2.10/32"));
    expect(withRule["192.0.2.11/32"]).toBe(ids["192.0.2.11/32"]);
  });

  it("rules beyond the kernel's capacity share the overflow id", () => {
    const ids = new RuleIds({ first: 16, overflow: 19 });
    expect([ids.idFor("a"), ids.idFor("b"), ids.idFor("c"), ids.idFor("d"), ids.idFor("e")]).toEqual([16, 17, 18, 19, 19]);
    expect(ids.keyOf(19)).toBeUndefined();
  });

  it("restores the ids the kernel entries carry after a restart; other counted ids are zeroed before reuse", () => {
    const ids = new RuleIds({ first: 16, overflow: 100 });
    ids.restore([["allow-cidr 10.0.0.0/8", 20], ["deny-cidr 192.0.2.0/24", 17]], [17, 18, 20, 30]);
    expect(ids.idFor("allow-cidr 10.0.0.0/8")).toBe(20);
    expect(ids.idFor("deny-cidr 192.0.2.0/24")).toBe(17);
    const dirty = ids.takeDirty().sort((a, b) => a - b);
    expect(dirty).toEqual([18, 30]);
    const fresh = new Set([ids.idFor("n1"), ids.idFor("n2"), ids.idFor("n3")]);
    expect(fresh.has(17) || fresh.has(20)).toBe(false);
  });
});
