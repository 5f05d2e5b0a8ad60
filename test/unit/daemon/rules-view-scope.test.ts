import { describe, expect, it } from "vitest";
import { parseCidr, type RuleScope } from "@netfence/proto/parse";
import { buildRulesView, ruleTextOf } from "../../../daemon/src/attachments/rules-view.js";
import { listRules } from "../../../daemon/src/rpc/list-rules.js";
import { RuleIds, KERNEL_RULE_ID_LIMITS, cidrRuleKey, domainRuleKey } from "../../../daemon/src/policy/rule-ids.js";
import type { PolicyState } from "../../../daemon/src/policy/policy-state.js";
import type { PinnedAttachment } from "../../../daemon/src/datapath/filter.js";
import { create } from "@bufbuild/protobuf";
import { ListRulesRequestSchema } from "@netfence/proto/daemon";

// `netfenced rules` / ListRules with scoped rules (issue 15): each rule's scope (protocols, ports,
// users and groups by name). The rule index's scoped pairs are built as policy/scoped-rules.ts
// keeps them (one allow/deny pair per scope key); rule-id keys as policy/compile.ts stamps them.

const scope = (s: Partial<RuleScope>): RuleScope => ({ protocols: [], ports: [], users: [], groups: [], ...s });
const redis = scope({ protocols: [6], ports: [{ from: 6379, to: 6379 }], users: [{ id: 33, name: "web" }] });
const KEY = "p=6;d=6379;u=33;g=";
const cidr = parseCidr("127.0.0.1/32");

function state(): PolicyState {
  const rules = new Map([["127.0.0.1/32", {
    cidr, allow: null, deny: { cidr, expiresAtMs: null },
    scoped: [{ key: KEY, scope: redis, allow: { cidr, expiresAtMs: null, scope: redis }, deny: null }],
  }]]);
  const dns = { mode: "allowlist", allowDomains: [{ domain: "pypi.org", includeSubdomains: false, scope: scope({ protocols: [6], ports: [{ from: 443, to: 443 }] }) }], denyDomains: [], upstreams: [] };
  return { rules, dns, ruleIds: new RuleIds(KERNEL_RULE_ID_LIMITS) } as unknown as PolicyState;
}

const kernel = { id: "nf-1", mode: "allowlist", audit: false, policy: { mode: "allowlist", audit: false, entries: [] } } as unknown as PinnedAttachment;

describe("rules view: scopes", () => {
  it("lists the scoped CIDR rule, the unscoped one of the same prefix and the scoped domain rule, with their scopes", async () => {
    const st = state();
    const v = buildRulesView("nf-1", kernel, [], st);
    const byRule = Object.fromEntries(v.rules.map((r) => [r.rule, r.scope]));
    expect(byRule).toMatchObject({
      "deny-cidr 127.0.0.1/32": "",
      "allow-cidr 127.0.0.1/32 tcp/6379 users web(33)": "tcp/6379 users web(33)",
      "allow-domain pypi.org tcp/443": "tcp/443",
    });
    const id = st.ruleIds.idFor(cidrRuleKey("allow", `127.0.0.1/32 ${KEY}`));
    expect(ruleTextOf(id, st)).toBe("allow-cidr 127.0.0.1/32 tcp/6379 users web(33)");
    expect(ruleTextOf(st.ruleIds.idFor(domainRuleKey("pypi.org")), st)).toBe("allow-domain pypi.org tcp/443");
    const wire = await listRules(create(ListRulesRequestSchema, { id: "nf-1" }), async () => v);
    expect(wire.rules.find((r) => r.ruleId === id)?.scope).toBe("tcp/6379 users web(33)");
  });

  it("a scoped rule id whose rule is gone says so", () => {
    const st = state();
    const id = st.ruleIds.idFor(cidrRuleKey("allow", "127.0.0.1/32 p=17;d=53;u=;g="));
    expect(ruleTextOf(id, st)).toBe("allow-cidr 127.0.0.1/32 p=17;d=53;u=;g= (removed)");
  });
});
