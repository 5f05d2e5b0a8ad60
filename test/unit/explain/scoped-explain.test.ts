import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatAddr, formatCidr, parseCidr, type RuleScope } from "@netfence/proto/parse";
import { Explainer } from "../../../daemon/src/explain/explainer.js";
import { walkPolicy, prefixOf } from "../../../daemon/src/explain/scope-walk.js";
import { decide } from "../../../daemon/src/explain/verdict.js";
import { PolicyState } from "../../../daemon/src/policy/policy-state.js";
import type { AttachmentRecord } from "../../../daemon/src/attachments/attachment-record.js";
import type { Filter } from "../../../daemon/src/datapath/filter.js";
import type { KernelLookup, KernelMatch } from "../../../daemon/src/datapath/kernel-lookup.js";
import type { FilterEntry, ScopedRuleEntry } from "../../../daemon/src/policy/compiled.js";
import { bruteForce } from "../datapath/scope-sim.js";
import { policy } from "../daemon/fakes.js";

// Explain's mirror of the scoped policy walk (explain/scope-walk.ts ↔ bpf/include/policy.h
// nf_lookup_v4 + nf_entry_match): fall-through, hop exhaustion (policy-depth), rule ids, owners;
// and the explainer's answer around it. The kernel's own behaviour is proven in
// test/kernel/segmentation (scoped-rules, scope-compiler).

const NOW = 1_700_000_000_000;
const TCP = 6;
const scope = (s: Partial<RuleScope>): RuleScope => ({ protocols: [], ports: [], users: [], groups: [], ...s });
const rule = (s: Partial<RuleScope>, action: "allow" | "deny", ruleId: number): ScopedRuleEntry => ({ scope: scope(s), allow: action === "allow", deny: action === "deny", ruleId, expiresAtMs: null });
const entry = (cidr: string, scoped: ScopedRuleEntry[], flags: Partial<FilterEntry> = {}): FilterEntry => ({ cidr: parseCidr(cidr), allow: false, deny: false, expiresAtMs: null, ruleId: 0, scoped, ...flags });
const web = { id: 33, name: "web" };

function walk(entries: FilterEntry[], dst: string, p: { protocol: number | null; port: number | null; uid: number | null; gid: number | null }) {
  const byKey = new Map(entries.map((e) => [formatCidr(e.cidr), e]));
  const addr = parseCidr(dst).addr;
  return walkPolicy(4, (len) => byKey.get(formatCidr(prefixOf(4, addr, len))) ?? null, p, NOW);
}

describe("explain's policy walk (scope-walk.ts)", () => {
  const redis = [entry("127.0.0.1/32", [rule({ protocols: [TCP], ports: [{ from: 6379, to: 6379 }], users: [web] }, "allow", 21)]), entry("127.0.0.0/8", [], { deny: true, ruleId: 22 })];

  it("a scoped host entry decides for its user; for another user it is stepped over and the /8 decides", () => {
    expect(walk(redis, "127.0.0.1", { protocol: TCP, port: 6379, uid: 33, gid: null }).decided).toMatchObject({ cidr: "127.0.0.1/32", allow: true, ruleId: 21 });
    const other = walk(redis, "127.0.0.1", { protocol: TCP, port: 6379, uid: 34, gid: null });
    expect(other.decided).toMatchObject({ cidr: "127.0.0.0/8", deny: true, ruleId: 22 });
    expect(other.skipped).toEqual([{ cidr: "127.0.0.1/32", why: "no rule matches" }]);
    expect([other.scoped, other.owners, other.depth]).toEqual([true, true, false]);
  });

  it("more than the data path's hops of non-matching prefixes fails closed (policy-depth); the host entry costs no hop", () => {
    const probe = { protocol: TCP, port: 80, uid: null, gid: null };
    const at = (lens: number[]) => lens.map((len, i) => ({ ...entry("10.0.0.0/8", [rule({ protocols: [TCP], ports: [{ from: 1, to: 1 }] }, "deny", 40 + i)]), cidr: prefixOf(4, parseCidr("10.1.2.3").addr, len) }));
    const three = at([29, 28, 27]);
    expect(walk(three, "10.1.2.3", probe)).toMatchObject({ decided: null, depth: false });
    expect(walk(at([29, 28, 27, 26]), "10.1.2.3", probe)).toMatchObject({ decided: null, depth: true });
    expect(walk(at([29, 28, 27, 0]), "10.1.2.3", probe)).toMatchObject({ decided: null, depth: false }); // the 4th is /0: nothing shorter
    expect(walk([...three, ...at([32])], "10.1.2.3", probe)).toMatchObject({ decided: null, depth: false });
  });

  it("rule id: the entry's unless a scoped deny decided over no entry deny, or the entry has no flags", () => {
    const p = { protocol: TCP, port: 443, uid: null, gid: null };
    const deny = rule({ protocols: [TCP] }, "deny", 7);
    const allow = rule({ protocols: [TCP] }, "allow", 8);
    expect(walk([entry("10.0.0.0/8", [deny], { allow: true, ruleId: 5 })], "10.0.0.1", p).decided).toMatchObject({ allow: true, deny: true, ruleId: 7 });
    expect(walk([entry("10.0.0.0/8", [allow], { deny: true, ruleId: 5 })], "10.0.0.1", p).decided).toMatchObject({ deny: true, ruleId: 5 });
    expect(walk([entry("10.0.0.0/8", [allow], { allow: true, ruleId: 5 })], "10.0.0.1", p).decided).toMatchObject({ allow: true, ruleId: 5 });
    expect(walk([entry("10.0.0.0/8", [allow])], "10.0.0.1", p).decided).toMatchObject({ allow: true, ruleId: 8 });
  });

  it("agrees with the brute-force matcher of the rule semantics whenever the walk does not run out of hops", () => {
    const lens = [8, 16, 24, 32];
    const ruleArb = fc.record({
      protos: fc.subarray([6, 17]), from: fc.integer({ min: 1, max: 6 }), span: fc.integer({ min: 0, max: 3 }), ports: fc.boolean(),
      users: fc.subarray([1, 2], { maxLength: 1 }), deny: fc.boolean(), ruleId: fc.integer({ min: 1, max: 9 }),
    }).map((r) => rule({ protocols: r.protos, ports: r.ports ? [{ from: r.from, to: r.from + r.span }] : [], users: r.users.map((id) => ({ id, name: null })) }, r.deny ? "deny" : "allow", r.ruleId));
    const entriesArb = fc.tuple(...lens.map((len) => fc.option(fc.record({ flags: fc.constantFrom({}, { allow: true }, { deny: true }), scoped: fc.array(ruleArb, { maxLength: 3 }) }).map((e) => ({ ...entry("10.0.0.0/8", e.scoped, { ...e.flags, ruleId: 50 + len }), cidr: prefixOf(4, parseCidr("10.1.2.3").addr, len) })))))
      .map((es) => es.filter((e): e is FilterEntry => e !== null));
    fc.assert(fc.property(entriesArb, fc.constantFrom(6, 17, 1), fc.integer({ min: 0, max: 10 }), fc.constantFrom(1, 2, 3), (entries, proto, port, uid) => {
      const p = { protocol: proto, port: proto === 1 ? 0 : port, uid, gid: null };
      const w = walk(entries, "10.1.2.3", p);
      if (w.depth) return;
      const truth = bruteForce(entries, { dst: parseCidr("10.1.2.3").addr, proto, port: p.port, uid, gid: 0xffffffff }, NOW);
      expect(w.decided === null ? "none" : w.decided.deny ? "deny" : "allow").toBe(truth.action);
      expect(w.decided?.prefixLen ?? null).toBe(truth.prefixLen);
      if (w.decided) expect(truth.ruleIds.has(w.decided.ruleId)).toBe(true);
    }), { numRuns: 500 });
  });
});

const answer = (match: KernelMatch | null, keep = false): KernelLookup => ({
  mode: "allowlist", audit: false, keep, guards: 0, dnsIp4: null, dnsIp6: null, dnsPort: 0, dnsPortMin: 0, dnsPortMax: 0,
  protectedCount: 0, protectedDenyCount: 0, match, expiredSkipped: 0, protectedAllow: null, protectedDeny: null,
});

describe("verdict: policy-depth and keep", () => {
  const probe = { family: 4 as const, addr: parseCidr("10.1.2.3").addr, protocol: TCP, port: 80 };
  it("a walk out of hops blocks with policy-depth, whatever the kernel's first entry said", () => {
    const m: KernelMatch = { cidr: "10.0.0.0/8", prefixLen: 8, allow: true, deny: false, ruleId: 1, expiresAtMs: null, table: "lpm" };
    expect(decide(answer(m), probe, { match: null, depth: true })).toMatchObject({ verdict: "blocked", reason: "policy-depth", step: "i" });
    expect(decide(answer(m), probe)).toMatchObject({ verdict: "allowed", reason: "allow-cidr" });
  });
  it("keep mode is reported for TCP (explain cannot see sockets)", () => {
    expect(decide(answer(null, true), probe).notes.join("\n")).toMatch(/keep mode/);
    expect(decide(answer(null, true), { ...probe, protocol: 17 }).notes.join("\n")).not.toMatch(/keep mode/);
  });
});

describe("Explainer with scoped rules (daemon-side walk)", () => {
  function world(entries: FilterEntry[], kernel: KernelMatch | null) {
    const state = new PolicyState(policy({ mode: "allowlist" }));
    const byKey = new Map(entries.map((e) => [formatCidr(e.cidr), e]));
    state.entryFor = (key: string) => byKey.get(key) ?? null;
    const filter = { lookup: async () => answer(kernel) } as unknown as Filter;
    const rec = { id: "nf-1", state } as unknown as AttachmentRecord;
    const explainer = new Explainer({ filter, record: () => rec, now: () => NOW });
    return (address: string, port: number, user = "", group = "") => explainer.explain({ attachmentId: "nf-1", address, domain: "", port, protocol: port ? "tcp" : "", user, group });
  }
  const kernelFirst: KernelMatch = { cidr: "127.0.0.1/32", prefixLen: 32, allow: false, deny: false, ruleId: 0, expiresAtMs: null, table: "small-exact" };
  const entries = [
    entry("127.0.0.1/32", [rule({ protocols: [TCP], ports: [{ from: 6379, to: 6379 }], users: [{ id: 0, name: "root" }] }, "allow", 21)]),
  ];

  it("the owner decides: root (by name, resolved through NSS) is allowed, nobody is not, and the answer says why", async () => {
    const q = world(entries, kernelFirst);
    const root = (await q("127.0.0.1", 6379, "root")).address!;
    // Without --group, the user's primary group (NSS) is asked for: the gid its sockets carry.
    expect(root).toMatchObject({ verdict: "allowed", reason: "allow-cidr", owner: "uid 0 (root), gid 0 (the user's primary group)", scopeSource: "daemon", entry: { cidr: "127.0.0.1/32", ruleId: 21 } });
    expect(root.scoped).toEqual([expect.objectContaining({ ruleId: 21, action: "allow", scope: "tcp/6379 users root(0)", matched: true })]);
    const nobody = (await q("127.0.0.1", 6379, "65534")).address!;
    expect(nobody).toMatchObject({ verdict: "blocked", reason: "local-closed", owner: "uid 65534, gid 65534 (the user's primary group)", entry: null, skipped: [{ cidr: "127.0.0.1/32", why: "no rule matches" }] });
    const anyone = (await q("127.0.0.1", 6379)).address!;
    expect(anyone.notes.join("\n")).toMatch(/no --user\/--group given/);
  });

  it("an unknown user name is INVALID_ARGUMENT; a user with --domain too", async () => {
    const q = world(entries, kernelFirst);
    await expect(q("127.0.0.1", 6379, "no-such-user-nf")).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  it("a layout-6 LOOKUP walked the scope tables for the question: its answer stands; a daemon walk that disagrees is called out", async () => {
    const asked: unknown[] = [];
    const state = new PolicyState(policy({ mode: "allowlist" }));
    const byKey = new Map(entries.map((e) => [formatCidr(e.cidr), e]));
    state.entryFor = (key: string) => byKey.get(key) ?? null;
    const kernelAnswer = { ...answer({ ...kernelFirst, allow: true, ruleId: 21 }), scoped: { scope: 1, allow: true, deny: false, ruleId: 21 }, scopedSkipped: 0, depthExhausted: false };
    const filter = { lookup: async (...args: unknown[]) => (asked.push(args[3]), kernelAnswer) } as unknown as Filter;
    const rec = { id: "nf-1", state } as unknown as AttachmentRecord;
    const ex = new Explainer({ filter, record: () => rec, now: () => NOW });
    const q = (user: string) => ex.explain({ attachmentId: "nf-1", address: "127.0.0.1", domain: "", port: 6379, protocol: "tcp", user, group: "" });
    const root = (await q("0")).address!;
    expect(asked[0]).toEqual({ protocol: 6, port: 6379, uid: 0, gid: 0 }); // root's primary group
    expect(root).toMatchObject({ verdict: "allowed", scopeSource: "kernel", entry: { cidr: "127.0.0.1/32", ruleId: 21 } });
    expect(root.notes.join("\n")).not.toMatch(/but the kernel at/);
    // The kernel (stub) allows uid 65534 too: the kernel's answer is reported, with the disagreement.
    const other = (await q("65534")).address!;
    expect(other).toMatchObject({ verdict: "allowed", scopeSource: "kernel" });
    expect(other.notes.join("\n")).toMatch(/daemon's compiled policy decides this packet at no entry but the kernel at 127.0.0.1\/32/);
  });

  it("a kernel walk out of hops blocks with policy-depth", async () => {
    const state = new PolicyState(policy({ mode: "allowlist" }));
    const filter = { lookup: async () => ({ ...answer(null), scoped: null, scopedSkipped: 4, depthExhausted: true }) } as unknown as Filter;
    const ex = new Explainer({ filter, record: () => ({ id: "nf-1", state }) as unknown as AttachmentRecord, now: () => NOW });
    const a = (await ex.explain({ attachmentId: "nf-1", address: "10.1.2.3", domain: "", port: 80, protocol: "tcp" })).address!;
    expect(a).toMatchObject({ verdict: "blocked", reason: "policy-depth", step: "i" });
  });

  it("without scoped rules on the way the kernel's answer stands (scope source kernel)", async () => {
    const q = world([entry("192.0.2.0/24", [], { allow: true })], { cidr: "192.0.2.0/24", prefixLen: 24, allow: true, deny: false, ruleId: 3, expiresAtMs: null, table: "lpm" });
    const a = (await q("192.0.2.7", 443)).address!;
    expect(a).toMatchObject({ verdict: "allowed", scopeSource: "kernel", skipped: [], scoped: [] });
    expect(formatAddr(4, parseCidr("192.0.2.7").addr)).toBe("192.0.2.7");
  });
});
