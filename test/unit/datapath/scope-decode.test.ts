import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { RuleScope } from "@netfence/proto/parse";
import type { FilterEntry, ScopedRuleEntry } from "../../../daemon/src/policy/compiled.js";
import { compileScopes, ScopeRegistry } from "../../../daemon/src/datapath/scope-registry.js";
import { encodeScopeWire, OWNER_UNKNOWN, type ScopeWireEntry } from "../../../daemon/src/datapath/scope-wire.js";
import { encodePolicy, KIND_CGROUP, KIND_TC, LAYOUT, type WireEntry } from "../../../daemon/src/datapath/wire-format.js";
import { decodeDump } from "../../../daemon/src/datapath/wire-decode.js";
import { adoptedPolicy, orphanPolicy } from "../../../daemon/src/attachments/orphan.js";
import type { PinnedAttachment } from "../../../daemon/src/datapath/filter.js";
import { PolicyState } from "../../../daemon/src/policy/policy-state.js";
import { loadPolicy, storePolicy, type StoredPolicy } from "../../../daemon/src/store/snapshot.js";
import { kernelSim, type Packet } from "./scope-sim.js";
import { GIDS, PORT_PROTOS, UIDS, portArb, scopedPolicyArbs } from "./scope-arbitraries.js";

// Session 21: DUMP rebuilds each address entry's scoped rules from the scope table
// (datapath/scope-decode.ts), the inverse of the scope compiler. Property: compile random scoped
// policies → the loader's DUMP reply of what REPLACE wrote → decode → compile again: the kernel
// (scope-sim.ts's simulation of the contract) decides every packet the same, directly and through
// the adopted policy (orphanPolicy → state.json round trip → PolicyState → compile). Content that
// cannot be rebuilt exactly is reported (adoption refuses), never rebuilt wider.

const NOW = 1_800_000_000_000;
const PREFIXES: Array<[number[], number]> = [[[10, 0, 0, 0], 8], [[10, 1, 0, 0], 16], [[10, 1, 2, 0], 24], [[10, 1, 2, 3], 32], [[10, 1, 2, 2], 31]];
const { policyArb } = scopedPolicyArbs(NOW, { prefixes: PREFIXES, minRuleId: 16, ports: (r) => r });

const packetArb: fc.Arbitrary<Packet> = fc
  .record({
    proto: fc.constantFrom(1, 6, 17, 58, 132, 47),
    port: fc.oneof(portArb, fc.integer({ min: 1, max: 65535 })),
    uid: fc.constantFrom(...UIDS, 7, OWNER_UNKNOWN),
    gid: fc.constantFrom(...GIDS, 9, OWNER_UNKNOWN),
    dst: fc.constantFrom(new Uint8Array([10, 1, 2, 3]), new Uint8Array([10, 1, 2, 2]), new Uint8Array([10, 1, 9, 9]), new Uint8Array([10, 7, 0, 1])),
  })
  .map((p) => ({ ...p, port: PORT_PROTOS.includes(p.proto) ? p.port : 0 }));

const live = (d: number | null, t: number): boolean => d === null || d > t;

/**
 * The loader's DUMP reply for what a REPLACE of (entries, table) at NOW wrote, read at `at`: the
 * loader never writes an entry already expired; DUMP leaves expired address entries out and sends
 * every scope entry (dump.c).
 */
function dumpReply(entries: readonly WireEntry[], table: readonly ScopeWireEntry[], at: number, kind = KIND_CGROUP): Buffer {
  const written = entries.filter((e) => live(e.expiresAtMs, NOW) && live(e.expiresAtMs, at));
  const scope = table.filter((e) => live(e.expiresAtMs, NOW));
  const frame = encodePolicy("t", "allowlist", false, written, false, encodeScopeWire(scope));
  const L = LAYOUT.nf_dump_reply;
  const head = Buffer.alloc(L.size);
  head.writeUInt32LE(written.length + scope.length, L.count);
  head.writeUInt8(kind, L.kind);
  return Buffer.concat([head, frame.subarray(LAYOUT.nf_policy_req.size)]);
}

/** What the kernel holds after a REPLACE of `entries` at `at` (expired entries are not written). */
function kernelOf(entries: readonly FilterEntry[], at: number): { entries: WireEntry[]; table: ScopeWireEntry[]; repushAtMs: number | null } {
  const out = compileScopes(entries, new ScopeRegistry(), at);
  return { entries: out.entries.filter((e) => live(e.expiresAtMs, at)), table: out.scopeWire.filter((e) => live(e.expiresAtMs, at)), repushAtMs: out.repushAtMs };
}

/** The adopted policy as the adopting daemon holds it after a restart (state.json round trip), compiled. */
function adopted(entries: readonly FilterEntry[], at: number): FilterEntry[] {
  const stored = JSON.parse(JSON.stringify(storePolicy(orphanPolicy({ mode: "allowlist", audit: false, entries })))) as StoredPolicy;
  return [...new PolicyState(loadPolicy(stored)).compile(at).entries];
}

function sameDecisions(a: ReturnType<typeof kernelOf>, b: ReturnType<typeof kernelOf>, packets: readonly Packet[], t: number, label: string): void {
  for (const p of packets) {
    const x = kernelSim(a.entries, a.table, p, t);
    const y = kernelSim(b.entries, b.table, p, t);
    expect([y.action, y.prefixLen], `${label}: ${JSON.stringify({ ...p, dst: [...p.dst] })} at ${t - NOW}`).toEqual([x.action, x.prefixLen]);
  }
}

describe("DUMP rebuilds scoped rules: compile → DUMP → decode → compile decides the same", () => {
  it("random policies, read back at once: no problem, same decisions (directly and through the adopted policy)", () => {
    fc.assert(
      fc.property(policyArb, fc.array(packetArb, { minLength: 1, maxLength: 30 }), (policy, packets) => {
        const k = kernelOf(policy, NOW);
        const d = decodeDump(dumpReply(k.entries, k.table, NOW), NOW);
        expect(d.scopeProblem).toBeNull();
        sameDecisions(k, kernelOf(d.entries, NOW), packets, NOW, "decoded");
        sameDecisions(k, kernelOf(adopted(d.entries, NOW), NOW), packets, NOW, "adopted");
      }),
      { numRuns: 500 },
    );
  });

  it("read back later, with entries expired meanwhile: either refused, or the same decisions as the kernel then", () => {
    let refused = 0;
    let rebuilt = 0;
    fc.assert(
      fc.property(policyArb, fc.constantFrom(NOW + 60, NOW + 120, NOW + 250), fc.array(packetArb, { minLength: 1, maxLength: 30 }), (policy, at, packets) => {
        const k = kernelOf(policy, NOW);
        const d = decodeDump(dumpReply(k.entries, k.table, at), at);
        if (d.scopeProblem !== null) {
          refused++;
          return;
        }
        rebuilt++;
        sameDecisions(k, kernelOf(d.entries, at), packets, at, "decoded");
        sameDecisions(k, kernelOf(adopted(d.entries, at), at), packets, at, "adopted");
      }),
      { numRuns: 500 },
    );
    expect(refused).toBeGreaterThan(0); // the case exists: a deny expired before the allow under it
    expect(rebuilt).toBeGreaterThan(refused);
  });
});

const rule = (scope: Partial<RuleScope>, extra: Partial<ScopedRuleEntry> = {}): ScopedRuleEntry => ({
  scope: { protocols: [], ports: [], users: [], groups: [], ...scope }, allow: true, deny: false, ruleId: 20, expiresAtMs: null, ...extra,
});
const at = (addr: number[], len: number, scoped: ScopedRuleEntry[], extra: Partial<FilterEntry> = {}): FilterEntry => ({
  cidr: { family: 4, addr: new Uint8Array(addr), prefixLen: len }, allow: false, deny: false, expiresAtMs: null, scoped, ...extra,
});

describe("DUMP rebuilds scoped rules: cases", () => {
  it("the issue's examples come back as the rules they were", () => {
    const policy = [
      at([10, 0, 0, 0], 8, [], { allow: true }),
      at([10, 1, 2, 3], 32, [rule({ protocols: [6], ports: [{ from: 22, to: 22 }] }, { allow: false, deny: true, ruleId: 21 })]),
      at([10, 9, 9, 9], 32, [rule({ protocols: [6], ports: [{ from: 443, to: 443 }], users: [{ id: 1000, name: null }] }, { ruleId: 22 })]),
      at([10, 9, 9, 8], 32, [rule({ ports: [{ from: 1000, to: 2000 }], groups: [{ id: 5, name: null }, { id: 7, name: null }] }, { ruleId: 23 })]),
    ];
    const k = kernelOf(policy, NOW);
    const d = decodeDump(dumpReply(k.entries, k.table, NOW), NOW);
    expect(d.scopeProblem).toBeNull();
    expect(d.entries.map((e) => [e.allow, e.deny, e.scoped ?? []])).toEqual([
      [true, false, []],
      [false, false, [rule({ protocols: [6], ports: [{ from: 22, to: 22 }] }, { allow: false, deny: true, ruleId: 21 })]],
      [false, false, [rule({ protocols: [6], ports: [{ from: 443, to: 443 }], users: [{ id: 1000, name: null }] }, { ruleId: 22 })]],
      [false, false, [rule({ protocols: [6, 17], ports: [{ from: 1000, to: 2000 }], groups: [{ id: 5, name: null }, { id: 7, name: null }] }, { ruleId: 23 })]],
    ]);
    const p = orphanPolicy({ mode: "allowlist", audit: false, entries: d.entries, keepEstablished: true });
    expect(p.established).toBe("keep");
    expect(p.denyCidrs).toEqual([{ cidr: d.entries[1]!.cidr, expiresAtMs: null, scope: d.entries[1]!.scoped![0]!.scope }]);
    expect(p.allowCidrs.map((r) => r.scope === undefined)).toEqual([true, false, false]);
  });

  it("a scoped rule never outlives its address entry", () => {
    // The compiler writes a scoped deadline at or after its entry's as "never" (scope-compile.ts "Expiry").
    const k = kernelOf([at([10, 1, 2, 3], 32, [rule({ protocols: [17] }, { expiresAtMs: NOW + 500 })], { allow: true, expiresAtMs: NOW + 500 })], NOW);
    expect(k.table.map((b) => b.expiresAtMs)).toEqual([null]);
    const d = decodeDump(dumpReply(k.entries, k.table, NOW), NOW);
    expect(d.entries[0]!.scoped!.map((r) => r.expiresAtMs)).toEqual([NOW + 500]);
    expect(orphanPolicy({ mode: "allowlist", audit: false, entries: d.entries }).allowCidrs.map((r) => r.expiresAtMs)).toEqual([NOW + 500, NOW + 500]);
  });

  it("an expired deny block over a live allow: refused, naming the prefix (the kernel answers 'no match' there)", () => {
    const policy = [at([10, 1, 2, 3], 32, [rule({ protocols: [6] }), rule({ protocols: [6], ports: [{ from: 22, to: 22 }] }, { allow: false, deny: true, ruleId: 21, expiresAtMs: NOW + 100 })])];
    const k = kernelOf(policy, NOW);
    expect(decodeDump(dumpReply(k.entries, k.table, NOW + 50), NOW + 50).scopeProblem).toBeNull();
    expect(decodeDump(dumpReply(k.entries, k.table, NOW + 150), NOW + 150).scopeProblem).toMatch(/^10\.1\.2\.3\/32: an expired or empty scoped block \(protocol 6 ports 22-22\) hides a live shorter one/);
  });

  it("adoption of a dump with a problem is refused (FAILED_PRECONDITION, naming the problem and what to do)", () => {
    const policy = [at([10, 1, 2, 3], 32, [rule({ protocols: [6] }), rule({ protocols: [6], ports: [{ from: 22, to: 22 }] }, { allow: false, deny: true, ruleId: 21, expiresAtMs: NOW + 100 })])];
    const k = kernelOf(policy, NOW);
    const d = decodeDump(dumpReply(k.entries, k.table, NOW + 150), NOW + 150);
    const pinned = { policy: { mode: d.mode, audit: d.audit, entries: d.entries }, scopeProblem: d.scopeProblem } as unknown as PinnedAttachment;
    let err: unknown;
    try {
      adoptedPolicy("orph-1", pinned);
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toBe("FAILED_PRECONDITION");
    expect(String((err as Error).message)).toMatch(/^the scoped rules of orphan orph-1 cannot be read back exactly \(10\.1\.2\.3\/32: .*netfenced detach --orphan orph-1/);
    expect(adoptedPolicy("orph-1", { ...pinned, scopeProblem: null }).denyCidrs).toEqual([]);
  });

  it("content the compiler never writes is refused, not guessed", () => {
    const base: ScopeWireEntry = { scope: 1, kind: 0, principal: 0, proto: 6, port: 0, portBits: 0, allow: false, deny: true, ruleId: 20, expiresAtMs: null };
    const entry: WireEntry = { cidr: { family: 4, addr: new Uint8Array([10, 1, 2, 3]), prefixLen: 32 }, allow: false, deny: false, expiresAtMs: null, scopeId: 1, scopeKinds: 4 };
    const problem = (table: ScopeWireEntry[]) => decodeDump(dumpReply([entry], table, NOW), NOW).scopeProblem;
    expect(problem([base])).toBeNull();
    expect(problem([base, { ...base, port: 80, portBits: 16, allow: true, deny: false }])).toMatch(/a scoped allow \(protocol 6 ports 80-80\) lies under a scoped deny/);
    expect(problem([{ ...base, port: 0, portBits: 8, allow: true, deny: false }])).toMatch(/holds port 0/);
  });

  it("blocks the kernel never looks up are left out: owner kinds on an interface, kinds the entry does not name, port blocks of ICMP", () => {
    const entry: WireEntry = { cidr: { family: 4, addr: new Uint8Array([10, 1, 2, 3]), prefixLen: 32 }, allow: false, deny: false, expiresAtMs: null, scopeId: 1, scopeKinds: 4 | 8 };
    const any: ScopeWireEntry = { scope: 1, kind: 0, principal: 0, proto: 17, port: 0, portBits: 0, allow: true, deny: false, ruleId: 20, expiresAtMs: null };
    const table = [any, { ...any, kind: 1 as const, principal: 33, deny: true, allow: false }, { ...any, kind: 2 as const, principal: 5, deny: true, allow: false }, { ...any, proto: 1, port: 80, portBits: 16 }];
    const cg = decodeDump(dumpReply([entry], table, NOW, KIND_CGROUP), NOW);
    expect(cg.entries[0]!.scoped!.map((r) => [r.scope.protocols, r.scope.users.map((u) => u.id), r.scope.groups.length, r.deny])).toEqual([[[17], [], 0, false], [[17], [33], 0, true]]);
    const tc = decodeDump(dumpReply([entry], table, NOW, KIND_TC), NOW);
    expect(tc.entries[0]!.scoped!.map((r) => r.scope.users.length)).toEqual([0]);
  });
});
