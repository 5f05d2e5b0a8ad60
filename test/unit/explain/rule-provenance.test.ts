import { describe, expect, it } from "vitest";
import { parseCidr } from "@netfence/proto/parse";
import { RuleProvenance, type RuleOrigin } from "../../../daemon/src/explain/rule-provenance.js";
import { LearnedAddresses } from "../../../daemon/src/policy/learned-addresses.js";

const o = (what: string, atMs: number, commandId = ""): RuleOrigin => ({ source: "control-plane", commandId, what, atMs });
const cidr = (t: string) => ({ cidr: parseCidr(t), expiresAtMs: null });

describe("RuleProvenance: one record per policy-wide change, one per rule changed since", () => {
  it("rules point at the change that set them; a bulk update replaces everything but kept DNS rules", () => {
    const p = new RuleProvenance();
    p.noteInitial("a", { source: "default-policy", commandId: "", what: "default-policy", atMs: 1 });
    expect(p.cidr("a", "allow", "10.0.0.0/8")).toMatchObject({ source: "default-policy" });
    p.noteCommand("a", { kind: "allow-cidr", rule: cidr("10.0.0.0/8") }, o("allow-cidr", 2, "c-2"));
    p.noteCommand("a", { kind: "allow-domain", rule: { domain: "x.com", includeSubdomains: false } }, o("allow-domain", 3, "c-3"));
    p.noteCommand("a", { kind: "set-mode", mode: "denylist" }, o("set-mode", 4, "c-4"));
    expect(p.cidr("a", "allow", "10.0.0.0/8")).toMatchObject({ commandId: "c-2", atMs: 2 });
    expect(p.cidr("a", "deny", "10.0.0.0/8")).toMatchObject({ source: "default-policy" });
    expect(p.mode("a")).toMatchObject({ commandId: "c-4" });
    // BulkUpdate without dns: CIDR rules and mode from it, DNS rules keep theirs.
    p.noteCommand("a", { kind: "bulk-update", mode: "allowlist", allowCidrs: [], denyCidrs: [], dns: null }, o("bulk-update", 5, "c-5"));
    expect(p.cidr("a", "allow", "10.0.0.0/8")).toMatchObject({ commandId: "c-5" });
    expect(p.mode("a")).toMatchObject({ commandId: "c-5" });
    expect(p.domain("a", "allow", "x.com")).toMatchObject({ commandId: "c-3" });
    expect(p.domain("a", "allow", "y.com")).toMatchObject({ source: "default-policy" });
    expect(p.dnsMode("a")).toMatchObject({ source: "default-policy" });
    // With dns: everything from it.
    p.noteCommand("a", { kind: "bulk-update", mode: "allowlist", allowCidrs: [], denyCidrs: [], dns: { mode: "disabled", allowDomains: [], denyDomains: [], upstreams: [] } }, o("bulk-update", 6, "c-6"));
    expect(p.domain("a", "allow", "x.com")).toMatchObject({ commandId: "c-6" });
    p.noteCommand("a", { kind: "deny-cidr", rule: cidr("10.1.0.0/16") }, o("deny-cidr", 7, "c-7"));
    p.noteCommand("a", { kind: "remove-cidr", cidr: parseCidr("10.1.0.0/16") }, o("remove-cidr", 8, "c-8"));
    expect(p.cidr("a", "deny", "10.1.0.0/16")).toMatchObject({ commandId: "c-6" });
    p.forget("a");
    expect(p.cidr("a", "allow", "10.0.0.0/8")).toBeNull();
  });
});

describe("learned records keep the answer behind them", () => {
  it("query time and answer TTL, kept when a later add has none, replaced by a newer answer; every name per address", () => {
    const l = new LearnedAddresses();
    const c = parseCidr("192.0.2.7");
    l.add("a.example", c, 10_000, undefined, { learnedAtMs: 1000, ttlSeconds: 9 });
    l.add("a.example", c, 5_000); // an older deadline (e.g. restored): the answer stays
    expect(l.forPrefix("192.0.2.7/32")).toEqual([expect.objectContaining({ name: "a.example", expiresAtMs: 10_000, learnedAtMs: 1000, ttlSeconds: 9 })]);
    l.add("a.example", c, 20_000, undefined, { learnedAtMs: 15_000, ttlSeconds: 5 });
    expect(l.forPrefix("192.0.2.7/32")[0]).toMatchObject({ learnedAtMs: 15_000, ttlSeconds: 5, expiresAtMs: 20_000 });
    l.add("b.example", c, 30_000, undefined, { learnedAtMs: 16_000, ttlSeconds: 14 });
    expect(l.namesOf("192.0.2.7/32").sort()).toEqual(["a.example", "b.example"]);
  });
});
