import { describe, expect, it } from "vitest";
import { create, toJson } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ExplainRequestSchema, ExplainResponseSchema } from "@netfence/proto/daemon";
import { DnsMode, PolicyMode } from "@netfence/proto/types";
import { DaemonServiceImpl, type AttachmentService } from "../../../daemon/src/rpc/daemon-service.js";
import type { ExplainQuery } from "../../../daemon/src/explain/explain-query.js";
import type { Explanation } from "../../../daemon/src/explain/explainer.js";

// The Explain RPC's edge: the request handed to the explainer as is, the answer mapped onto
// ExplainResponse (times as Timestamps, "never" as -1 / unset, an unrecorded origin as an empty
// RuleOrigin), and FAILED_PRECONDITION when the daemon has no explainer.

const T = 1_700_000_000_000;
const service = (explain?: (q: ExplainQuery) => Promise<Explanation>) =>
  new DaemonServiceImpl({ registry: {} as AttachmentService, version: "t", hostname: "h", controlPlane: null, events: () => [][Symbol.iterator]() as never, explain });

describe("Explain RPC", () => {
  it("maps an address explanation onto the wire", async () => {
    const asked: ExplainQuery[] = [];
    const s = service(async (q) => {
      asked.push(q);
      return {
        attachmentId: "nf-1",
        domain: null,
        address: {
          address: "192.0.2.7", protocol: 6, port: 443, verdict: "allowed", reason: "allow-cidr", step: "i", mode: "allowlist", audit: false,
          modeOrigin: null,
          entry: { cidr: "192.0.2.0/24", prefixLen: 24, allow: true, deny: false, ruleId: 0, expiresAtMs: null, table: "lpm", ttlLeftMs: null },
          entryUsed: true, expiredSkipped: 0,
          sources: [{ kind: "cidr-rule", action: "allow", cidr: "192.0.2.0/24", expiresAtMs: null, origin: { source: "control-plane", commandId: "c-1", what: "allow-cidr", atMs: T } }],
          protectedCidr: null, names: [], notes: ["n"],
          owner: "uid 33 (web)", scoped: [{ ruleId: 4, action: "allow", scope: "tcp/443 users web(33)", matched: true, expiresAtMs: null }],
          skipped: [{ cidr: "192.0.2.7/32", why: "no rule matches" }], keep: true, scopeSource: "daemon",
        },
      };
    });
    const r = await s.explain(create(ExplainRequestSchema, { attachmentId: "nf-1", address: "192.0.2.7", port: 443, protocol: "tcp", user: "web" }));
    expect(asked).toEqual([{ attachmentId: "nf-1", address: "192.0.2.7", domain: "", port: 443, protocol: "tcp", user: "web", group: "" }]);
    const a = r.address!;
    expect([a.verdict, a.reason, a.step, a.mode, a.protocol, a.port]).toEqual(["allowed", "allow-cidr", "i", PolicyMode.ALLOWLIST, 6, 443]);
    expect(a.entry).toMatchObject({ cidr: "192.0.2.0/24", allow: true, ttlLeftMs: -1n, table: "lpm", used: true });
    expect(a.entry!.expiresAt).toBeUndefined();
    expect(a.entry!.scoped).toEqual([expect.objectContaining({ ruleId: 4, action: "allow", scope: "tcp/443 users web(33)", matched: true })]);
    expect([a.owner, a.keep, a.scopeSource, a.skipped[0]?.cidr, a.skipped[0]?.why]).toEqual(["uid 33 (web)", true, "daemon", "192.0.2.7/32", "no rule matches"]);
    expect(a.modeOrigin).toMatchObject({ source: "", commandId: "" });
    expect(a.sources[0]!.origin).toMatchObject({ source: "control-plane", commandId: "c-1", what: "allow-cidr" });
    expect(timestampMs(a.sources[0]!.origin!.at!)).toBe(T);
    expect(toJson(ExplainResponseSchema, r)).toMatchObject({ attachmentId: "nf-1", address: { verdict: "allowed", entry: { ttlLeftMs: "-1" } } });
  });

  it("maps a domain explanation onto the wire", async () => {
    const s = service(async () => ({
      attachmentId: "nf-1",
      address: null,
      domain: {
        domain: "a.example", dnsMode: "allowlist", dnsModeOrigin: null, resolves: true,
        rule: { action: "allow", domain: "example", includeSubdomains: true, origin: { source: "default-policy", commandId: "", what: "default-policy", atMs: T } },
        learned: [{ address: "192.0.2.7", expiresAtMs: T + 5000, ttlLeftMs: 5000, learnedAtMs: null, ttlSeconds: null, sharedWith: ["b.example"] }],
        notes: [],
      },
    }));
    const d = (await s.explain(create(ExplainRequestSchema, { attachmentId: "nf-1", domain: "a.example" }))).domain!;
    expect([d.dnsMode, d.resolves, d.ruleAction, d.ruleDomain, d.ruleIncludeSubdomains, d.ruleOrigin?.source]).toEqual([DnsMode.ALLOWLIST, true, "allow", "example", true, "default-policy"]);
    expect(d.learned[0]).toMatchObject({ address: "192.0.2.7", ttlLeftMs: 5000n, sharedWith: ["b.example"], answerTtlSeconds: 0 });
    expect(d.learned[0]!.learnedAt).toBeUndefined();
  });

  it("a daemon without an explainer answers FAILED_PRECONDITION", async () => {
    await expect(service().explain(create(ExplainRequestSchema, { attachmentId: "nf-1", address: "10.0.0.1" }))).rejects.toMatchObject({ code: "FAILED_PRECONDITION" });
  });
});
