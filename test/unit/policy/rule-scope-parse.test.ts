import { describe, expect, it } from "vitest";
import { formatRuleScope, parseRuleScope, type PrincipalLookup } from "@netfence/proto/parse";

// The one parser of rule scopes (proto/src/parse/rule-scope-parse.ts), shared by the daemon's
// command edge, the SDK, netfence-cp and the policy file.

const lookup: PrincipalLookup = (kind, name) => (kind === "user" ? ({ web: 33, redis: 999 } as Record<string, number>)[name] ?? null : name === "staff" ? 50 : null);

describe("parseRuleScope", () => {
  it("empty or absent = unscoped (undefined): a rule written without a scope is the same rule", () => {
    expect(parseRuleScope(undefined)).toBeUndefined();
    expect(parseRuleScope({})).toBeUndefined();
    expect(parseRuleScope({ protocols: [], ports: [], users: [], groups: [] })).toBeUndefined();
  });

  it("protocols by name or number, sorted and unique", () => {
    expect(parseRuleScope({ protocols: ["UDP", "tcp", 6, "icmpv6", "sctp", "icmp", "47"] })!.protocols).toEqual([1, 6, 17, 47, 58, 132]);
    expect(() => parseRuleScope({ protocols: ["tcpp"] }, "r")).toThrow(/r\.protocols\[0\]: "tcpp" is not a protocol/);
    expect(() => parseRuleScope({ protocols: [0] })).toThrow(/not a protocol/);
    expect(() => parseRuleScope({ protocols: ["256"] })).toThrow(/not a protocol/);
  });

  it("ports: single or from-to, merged (overlapping and adjacent); 1..65535; without protocols = tcp and udp", () => {
    const s = parseRuleScope({ ports: [443, "8000-8100", "8101", { from: 8050, to: 8200 }, "80", 81] })!;
    expect(s.protocols).toEqual([6, 17]);
    expect(s.ports).toEqual([{ from: 80, to: 81 }, { from: 443, to: 443 }, { from: 8000, to: 8200 }]);
    expect(parseRuleScope({ ports: [{ from: 53, to: 0 }], protocols: ["udp"] })!.ports).toEqual([{ from: 53, to: 53 }]);
    for (const bad of [0, 65536, "100-99", "x", "1-", "-5", 1.5]) expect(() => parseRuleScope({ ports: [bad] }), String(bad)).toThrow(/port/);
  });

  it("ports only with tcp, udp, sctp", () => {
    expect(parseRuleScope({ protocols: ["sctp"], ports: [9] })!.protocols).toEqual([132]);
    expect(() => parseRuleScope({ protocols: ["tcp", "icmp"], ports: [22] }, "allow_cidr.scope")).toThrow(
      /allow_cidr\.scope: ports need tcp, udp or sctp; icmp has no ports/,
    );
  });

  it("users and groups: numbers as they are, names through the lookup; unknown names are errors naming the field", () => {
    const s = parseRuleScope({ users: ["web", "0", 33, "65534"], groups: ["staff"] }, "scope", lookup)!;
    expect(s.users).toEqual([{ id: 0, name: null }, { id: 33, name: "web" }, { id: 65534, name: null }]);
    expect(s.groups).toEqual([{ id: 50, name: "staff" }]);
    expect(s.protocols).toEqual([]);
    expect(() => parseRuleScope({ users: ["nosuch"] }, "bulk_update.allow_cidrs[2].scope", lookup)).toThrow(
      'bulk_update.allow_cidrs[2].scope.users: unknown user "nosuch"',
    );
    expect(() => parseRuleScope({ users: ["web"] })).toThrow(/unknown user "web"/); // no lookup: names are unknown
    expect(() => parseRuleScope({ users: ["4294967295"] })).toThrow(/out of range/);
    expect(() => parseRuleScope({ groups: ["bad name!"] })).toThrow(/not a group name or number/);
  });

  it("formats for messages", () => {
    expect(formatRuleScope(parseRuleScope({ protocols: ["tcp"], ports: [443, "8000-8100"], users: ["web"] }, "s", lookup))).toBe("tcp/443,8000-8100 users=web(33)");
    expect(formatRuleScope(undefined)).toBe("any");
  });
});
