import { describe, expect, it } from "vitest";
import { VERDICT_CACHE_SIZE, compileDomainRules, matchDomain, nameAllowed } from "@netfence/proto/domain-match";
import type { DnsModeName, DnsPolicy, DomainRule } from "../../../daemon/src/policy/policy.js";

function rule(spec: string): DomainRule {
  // "*.x" = x with subdomains, "x" = exact
  return spec.startsWith("*.") ? { domain: spec.slice(2), includeSubdomains: true } : { domain: spec, includeSubdomains: false };
}

function policy(mode: DnsModeName, allow: string[], deny: string[]): DnsPolicy {
  return { mode, allowDomains: allow.map(rule), denyDomains: deny.map(rule), upstreams: [] };
}

describe("matchDomain", () => {
  it("an exact rule matches only its name", () => {
    const rules = compileDomainRules(policy("allowlist", ["example.com"], []));
    expect(matchDomain(rules, "example.com")).toBe("allow");
    expect(matchDomain(rules, "www.example.com")).toBe("none");
    expect(matchDomain(rules, "badexample.com")).toBe("none");
    expect(matchDomain(rules, "com")).toBe("none");
  });

  it("a subtree rule matches its name and everything below, not look-alike siblings", () => {
    const rules = compileDomainRules(policy("allowlist", ["*.example.com"], []));
    expect(matchDomain(rules, "example.com")).toBe("allow");
    expect(matchDomain(rules, "a.b.c.example.com")).toBe("allow");
    expect(matchDomain(rules, "notexample.com")).toBe("none");
    expect(matchDomain(rules, "example.com.evil.net")).toBe("none");
  });

  it("compares case-insensitively and ignores a trailing dot", () => {
    const rules = compileDomainRules(policy("allowlist", ["*.Example.COM."], ["Bad.Example.com"]));
    expect(matchDomain(rules, "WWW.EXAMPLE.COM.")).toBe("allow");
    expect(matchDomain(rules, "bad.example.com.")).toBe("deny");
    expect(matchDomain(rules, "BAD.EXAMPLE.COM")).toBe("deny");
  });

  it("the most specific rule wins, in both directions", () => {
    const rules = compileDomainRules(policy("allowlist", ["*.api.example.com", "*.org"], ["*.example.com", "*.evil.org"]));
    expect(matchDomain(rules, "v1.api.example.com")).toBe("allow");
    expect(matchDomain(rules, "api.example.com")).toBe("allow");
    expect(matchDomain(rules, "www.example.com")).toBe("deny");
    expect(matchDomain(rules, "x.evil.org")).toBe("deny");
    expect(matchDomain(rules, "good.org")).toBe("allow");
  });

  it("an exact allow beats a broader subtree deny", () => {
    const rules = compileDomainRules(policy("denylist", ["ok.example.com"], ["*.example.com"]));
    expect(matchDomain(rules, "ok.example.com")).toBe("allow");
    expect(matchDomain(rules, "sub.ok.example.com")).toBe("deny");
  });

  it("deny wins at equal specificity (same name, exact or subtree)", () => {
    expect(matchDomain(compileDomainRules(policy("allowlist", ["*.x.com"], ["*.x.com"])), "a.x.com")).toBe("deny");
    expect(matchDomain(compileDomainRules(policy("allowlist", ["x.com"], ["x.com"])), "x.com")).toBe("deny");
    expect(matchDomain(compileDomainRules(policy("allowlist", ["*.x.com"], ["x.com"])), "x.com")).toBe("deny");
    expect(matchDomain(compileDomainRules(policy("allowlist", ["x.com"], ["*.x.com"])), "x.com")).toBe("deny");
    // ...but the exact deny does not reach below the name
    expect(matchDomain(compileDomainRules(policy("allowlist", ["*.x.com"], ["x.com"])), "a.x.com")).toBe("allow");
  });

  it("caches the compiled rules per policy object", () => {
    const p = policy("allowlist", ["a.com"], []);
    expect(compileDomainRules(p)).toBe(compileDomainRules(p));
    expect(compileDomainRules(policy("allowlist", ["a.com"], []))).not.toBe(compileDomainRules(p));
  });

  it("remembers verdicts per compiled policy and stays correct when the cache is emptied", () => {
    const rules = compileDomainRules(policy("allowlist", ["*.a.test"], ["bad.a.test"]));
    expect(matchDomain(rules, "x.a.test")).toBe("allow");
    expect(matchDomain(rules, "X.A.TEST.")).toBe("allow");
    expect(rules.verdicts.get("x.a.test")).toBe("allow");
    for (let i = 0; i < VERDICT_CACHE_SIZE + 10; i++) matchDomain(rules, `n${i}.a.test`);
    expect(rules.verdicts.size).toBeLessThanOrEqual(VERDICT_CACHE_SIZE);
    expect(matchDomain(rules, "bad.a.test")).toBe("deny");
    expect(matchDomain(rules, "x.a.test")).toBe("allow");
    // a doubled trailing dot is not the same name and must not poison the cache
    expect(matchDomain(rules, "bad.a.test..")).toBe("none");
    expect(matchDomain(rules, "bad.a.test.")).toBe("deny");
    expect(matchDomain(rules, "bad.a.test")).toBe("deny");
  });

  it("finds the right rule among 10k rules", () => {
    const allow = Array.from({ length: 5000 }, (_, i) => `*.svc${i}.example.com`);
    const deny = Array.from({ length: 5000 }, (_, i) => `host${i}.svc${i}.example.com`);
    const rules = compileDomainRules(policy("allowlist", allow, deny));
    expect(rules.ruleCount).toBe(10_000);
    expect(matchDomain(rules, "a.svc4999.example.com")).toBe("allow");
    expect(matchDomain(rules, "host4999.svc4999.example.com")).toBe("deny");
    expect(matchDomain(rules, "host4998.svc4999.example.com")).toBe("allow");
    expect(matchDomain(rules, "svc5000.example.com")).toBe("none");
  });
});

describe("nameAllowed", () => {
  it("disabled and proxy modes allow every name", () => {
    expect(nameAllowed(policy("disabled", [], ["*.com"]), "a.com")).toBe(true);
    expect(nameAllowed(policy("proxy", [], ["*.com"]), "a.com")).toBe(true);
  });

  it("allowlist allows only names whose best match is an allow rule", () => {
    const p = policy("allowlist", ["*.example.com"], ["ads.example.com"]);
    expect(nameAllowed(p, "www.example.com")).toBe(true);
    expect(nameAllowed(p, "ads.example.com")).toBe(false);
    expect(nameAllowed(p, "other.net")).toBe(false);
    expect(nameAllowed(policy("allowlist", [], []), "example.com")).toBe(false);
  });

  it("denylist allows everything except names whose best match is a deny rule", () => {
    const p = policy("denylist", ["ok.evil.net"], ["*.evil.net"]);
    expect(nameAllowed(p, "evil.net")).toBe(false);
    expect(nameAllowed(p, "x.evil.net")).toBe(false);
    expect(nameAllowed(p, "ok.evil.net")).toBe(true);
    expect(nameAllowed(p, "fine.org")).toBe(true);
  });
});
