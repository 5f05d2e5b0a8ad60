import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { AddressExplanationSchema, DomainExplanationSchema, ExplainEntrySchema, ExplainScopedRuleSchema, ExplainSkippedSchema, ExplainSourceSchema, RuleOriginSchema } from "@netfence/proto/daemon";
import { DnsMode, PolicyMode } from "@netfence/proto/types";
import { durationText, formatAddressExplanation, formatDomainExplanation } from "../../../cli/src/commands/explain.js";

// The human output of `netfenced explain` (the JSON output is the proto's JSON mapping).

const T = Date.UTC(2026, 11, 3, 9, 0, 0);

describe("explain's human output", () => {
  it("issue 15: the owner, the entries stepped over, the deciding entry's scoped rules, keep mode", () => {
    const text = formatAddressExplanation(
      "nf-1",
      create(AddressExplanationSchema, {
        address: "127.0.0.1", protocol: 6, port: 6379, verdict: "blocked", reason: "deny-cidr", step: "i", mode: PolicyMode.ALLOWLIST, keep: true,
        modeOrigin: create(RuleOriginSchema, {}), owner: "uid 34 (app)",
        skipped: [create(ExplainSkippedSchema, { cidr: "127.0.0.1/32", why: "no rule matches" })],
        entry: create(ExplainEntrySchema, {
          cidr: "127.0.0.0/8", deny: true, ttlLeftMs: -1n, table: "lpm", used: true, ruleId: 9,
          scoped: [create(ExplainScopedRuleSchema, { ruleId: 9, action: "deny", scope: "tcp/6000-6999", matched: true })],
        }),
        scopeSource: "daemon",
      }),
    );
    expect(text.split("\n").slice(0, 6)).toEqual([
      "nf-1: 127.0.0.1:6379/tcp is BLOCKED (deny-cidr, step i)",
      "  mode:     allowlist + keep established — origin not recorded (an attachment adopted from its pins: re-registered from the kernel maps)",
      "  owner:    uid 34 (app)",
      "  skipped:  127.0.0.1/32 (none of its rules matches this packet)",
      "  entry:    127.0.0.0/8 deny, never expires [lpm, rule 9]",
      "  scoped:   rule 9 deny tcp/6000-6999 — matches",
    ]);
  });

  it("an address: verdict line, mode and origin, the kernel entry with its TTL, why it exists, every name, notes", () => {
    const text = formatAddressExplanation(
      "nf-1",
      create(AddressExplanationSchema, {
        address: "198.51.100.7", protocol: 6, port: 443, verdict: "allowed", reason: "allow-cidr", step: "i", mode: PolicyMode.ALLOWLIST,
        modeOrigin: create(RuleOriginSchema, { source: "default-policy", what: "default-policy", at: timestampFromMs(T) }),
        entry: create(ExplainEntrySchema, { cidr: "198.51.100.7/32", allow: true, ttlLeftMs: 125_000n, table: "small-exact", used: true }),
        sources: [
          create(ExplainSourceSchema, { kind: "dns", name: "a.example", learnedAt: timestampFromMs(T), answerTtlSeconds: 300, expiresAt: timestampFromMs(T + 300_000) }),
          create(ExplainSourceSchema, { kind: "cidr-rule", action: "allow", cidr: "198.51.100.7/32", origin: create(RuleOriginSchema, { source: "control-plane", commandId: "c-9", what: "allow-cidr", at: timestampFromMs(T) }) }),
        ],
        names: ["a.example", "b.example"],
        notes: ["2 DNS names resolved to this address (a shared address, e.g. a CDN): allowing any of them opens it for all"],
      }),
    );
    expect(text).toBe(
      [
        "nf-1: 198.51.100.7:443/tcp is ALLOWED (allow-cidr, step i)",
        "  mode:     allowlist — default policy (config) (default-policy) at 2026-12-03T09:00:00.000Z",
        "  entry:    198.51.100.7/32 allow, 2m05s left [small-exact]",
        "  because:  DNS a.example — answer at 2026-12-03T09:00:00.000Z, TTL 300s, kept until 2026-12-03T09:05:00.000Z",
        "  because:  allow 198.51.100.7/32 — control plane command c-9 (allow-cidr) at 2026-12-03T09:00:00.000Z",
        "  names:    a.example, b.example  (shared address)",
        "  note:     2 DNS names resolved to this address (a shared address, e.g. a CDN): allowing any of them opens it for all",
        "",
      ].join("\n"),
    );
  });

  it("a blocked address without an entry, IPv6 with a port, an origin not recorded", () => {
    const text = formatAddressExplanation("nf-2", create(AddressExplanationSchema, { address: "2001:db8::1", protocol: 17, port: 53, verdict: "blocked", reason: "not-in-allowlist", step: "k", mode: PolicyMode.ALLOWLIST }));
    expect(text).toContain("nf-2: [2001:db8::1]:53/udp is BLOCKED (not-in-allowlist, step k)");
    expect(text).toContain("origin not recorded");
    expect(text).toContain("entry:    none");
  });

  it("a domain: verdict, deciding rule, learned addresses with TTL left and the names sharing them", () => {
    const text = formatDomainExplanation(
      "nf-1",
      create(DomainExplanationSchema, {
        domain: "a.example", dnsMode: DnsMode.ALLOWLIST, resolves: true, ruleAction: "allow", ruleDomain: "example", ruleIncludeSubdomains: true,
        learned: [{ address: "198.51.100.7", ttlLeftMs: 59_000n, answerTtlSeconds: 60, learnedAt: timestampFromMs(T), sharedWith: ["b.example"] }],
      }),
    );
    expect(text).toContain("nf-1: a.example RESOLVES (DNS mode allowlist");
    expect(text).toContain("rule:     allow *.example (and subdomains)");
    expect(text).toContain("learned:  198.51.100.7 — 59s left (answer at 2026-12-03T09:00:00.000Z, TTL 60s); also from b.example (shared address)");
    expect(durationText(-1)).toBe("never expires");
    expect(durationText(3_725_000)).toBe("1h02m left");
  });
});
