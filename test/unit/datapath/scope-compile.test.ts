import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { PortRange, RuleScope } from "@netfence/proto/parse";
import { isNetfenceError } from "@netfence/proto/errors";
import type { FilterEntry, ScopedRuleEntry } from "../../../daemon/src/policy/compiled.js";
import { alignedBlocks } from "../../../daemon/src/datapath/scope-blocks.js";
import { compileScopeSet, scopeSetKey } from "../../../daemon/src/datapath/scope-compile.js";
import { compileScopes, SCOPE_GEN_CAP, ScopeRegistry } from "../../../daemon/src/datapath/scope-registry.js";
import {
  ENTRY_SCOPE_ANY, ENTRY_SCOPE_GID, ENTRY_SCOPE_UID, OWNER_UNKNOWN, scopeWireKey, scopeWirePrefixLen, type ScopeWireEntry,
  encodeScopeWire, writeScopeWireEntry,
} from "../../../daemon/src/datapath/scope-wire.js";
import { bruteForce, duplicateKeys, kernelSim, type Packet } from "./scope-sim.js";
import { GIDS, PORT_PROTOS, UIDS, portArb, scopedPolicyArbs } from "./scope-arbitraries.js";
import { scopeWire as handBuilt } from "../../helpers/scope-wire-fixture.js";

const NOW = 1_800_000_000_000;
const DST = new Uint8Array([10, 1, 2, 3]);
const PREFIXES: Array<[number[], number]> = [[[10, 0, 0, 0], 8], [[10, 1, 0, 0], 16], [[10, 1, 2, 0], 24], [[10, 1, 2, 3], 32], [[10, 1, 2, 3], 31]];
function merge(ranges: PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a.from - b.from);
  const out: PortRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.from <= last.to + 1) out[out.length - 1] = { from: last.from, to: Math.max(last.to, r.to) };
    else out.push(r);
  }
  return out;
}

const { policyArb } = scopedPolicyArbs(NOW, { prefixes: PREFIXES, minRuleId: 1, ports: merge });

const packetArb: fc.Arbitrary<Packet> = fc
  .record({
    proto: fc.constantFrom(1, 6, 17, 58, 132, 47),
    port: portArb,
    uid: fc.constantFrom(...UIDS, 7, OWNER_UNKNOWN),
    gid: fc.constantFrom(...GIDS, 9, OWNER_UNKNOWN),
    dst: fc.constantFrom(DST, new Uint8Array([10, 1, 2, 2]), new Uint8Array([10, 1, 9, 9])),
  })
  .map((p) => ({ ...p, port: PORT_PROTOS.includes(p.proto) ? p.port : 0 }));
const atArb = fc.constantFrom(NOW, NOW + 49, NOW + 50, NOW + 99, NOW + 150, NOW + 250);

function sameVerdict(entries: FilterEntry[], out: ReturnType<typeof compileScopes>, table: readonly ScopeWireEntry[], p: Packet, t: number): void {
  const truth = bruteForce(entries, p, t);
  const kernel = kernelSim(out.entries, table, p, t);
  if (out.repushAtMs === null || t < out.repushAtMs) {
    expect(kernel.action).toBe(truth.action);
    expect(kernel.prefixLen).toBe(truth.prefixLen);
    for (const id of kernel.ruleIds) expect(truth.ruleIds.has(id)).toBe(true);
  } else {
    // After a deny expired before an allow of the same block (until the re-push): never more permissive.
    if (kernel.action === "allow") expect(truth.action).toBe("allow");
    if (truth.action === "deny") expect(kernel.action).toBe("deny");
  }
}

describe("scope compiler: LPM over the output equals the rule semantics", () => {
  it("random policies, packets and times (REPLACE)", () => {
    fc.assert(
      fc.property(policyArb, fc.array(fc.tuple(packetArb, atArb), { minLength: 1, maxLength: 25 }), (entries, probes) => {
        const out = compileScopes(entries, new ScopeRegistry(), NOW);
        expect(duplicateKeys(out.scopeWire)).toEqual([]);
        for (const [p, t] of probes) sameVerdict(entries, out, out.scopeWire, p, t);
      }),
      { numRuns: 600 },
    );
  });

  it("random UPSERT batches into the active generation, with the removals applied", () => {
    fc.assert(
      fc.property(policyArb, policyArb, fc.array(packetArb, { minLength: 1, maxLength: 20 }), (base, batch, packets) => {
        const reg = new ScopeRegistry();
        const first = reg.replace(base, NOW);
        first.commit();
        let table = [...first.scopeWire];
        const plan = reg.upsert(batch, NOW);
        plan.commit();
        const gone = new Set(plan.scopeRemove.map((e) => `${scopeWirePrefixLen(e)}:${Buffer.from(scopeWireKey(e)).toString("hex")}`));
        table = [...table.filter((e) => !gone.has(`${scopeWirePrefixLen(e)}:${Buffer.from(scopeWireKey(e)).toString("hex")}`)), ...plan.scopeWire];
        plan.released();
        expect(duplicateKeys(table)).toEqual([]);
        expect(reg.scopeEntries).toBe(table.length);
        const replaced = new Set(batch.map((e) => e.cidr.prefixLen));
        const merged = [...base.filter((e) => !replaced.has(e.cidr.prefixLen)), ...batch];
        const wire = [...first.entries.filter((e) => !replaced.has(e.cidr.prefixLen)), ...plan.entries];
        const ids = new Set(table.map((e) => e.scope));
        for (const e of wire) if (e.scopeId) expect(ids.has(e.scopeId)).toBe(true);
        for (const p of packets) {
          const repush = [first.repushAtMs, plan.repushAtMs].filter((x): x is number => x !== null);
          const out = { entries: wire, repushAtMs: repush.length ? Math.min(...repush) : null } as unknown as ReturnType<typeof compileScopes>;
          sameVerdict(merged, out, table, p, NOW);
        }
      }),
      { numRuns: 300 },
    );
  });
});

const rule = (scope: Partial<RuleScope>, extra: Partial<ScopedRuleEntry> = {}): ScopedRuleEntry => ({
  scope: { protocols: [], ports: [], users: [], groups: [], ...scope }, allow: true, deny: false, ruleId: 1, expiresAtMs: null, ...extra,
});
const entry = (last: number, scoped: ScopedRuleEntry[], extra: Partial<FilterEntry> = {}): FilterEntry => ({
  cidr: { family: 4, addr: new Uint8Array([10, 0, 0, last]), prefixLen: 32 }, allow: false, deny: false, expiresAtMs: null, scoped, ...extra,
});
const blocks = (r: ScopedRuleEntry): number => compileScopeSet([r], scopeSetKey([r]), NOW).blocks.length;

describe("scope compiler: block counts (worst cases, docs/architecture.md)", () => {
  it("counts blocks", () => {
    expect(alignedBlocks(1, 65535)).toHaveLength(16);
    expect(alignedBlocks(1, 65534)).toHaveLength(30);
    expect(alignedBlocks(2, 65534)).toHaveLength(29);
    expect(alignedBlocks(443, 443)).toEqual([{ port: 443, portBits: 16 }]);
    expect(blocks(rule({ protocols: [6], ports: [{ from: 443, to: 443 }] }))).toBe(1);
    expect(blocks(rule({ protocols: [6], ports: [{ from: 1, to: 65535 }] }))).toBe(16);
    expect(blocks(rule({ protocols: [6], ports: [{ from: 1, to: 65534 }] }))).toBe(30);
    expect(blocks(rule({ ports: [{ from: 1, to: 65534 }] }))).toBe(60); // tcp and udp
    expect(blocks(rule({ protocols: [6], ports: [{ from: 1024, to: 65535 }] }))).toBe(6);
    expect(blocks(rule({ protocols: [6, 17, 132], ports: [{ from: 1, to: 65534 }], users: [1, 2, 3].map((id) => ({ id, name: null })) }))).toBe(270);
    expect(blocks(rule({ users: [{ id: 1000, name: null }] }))).toBe(1); // users only: one prefix-64 block
    expect(blocks(rule({ protocols: [1] }))).toBe(1);
  });

  it("a deny inside an allowed range costs the blocks of the split", () => {
    const set = compileScopeSet(
      [rule({ protocols: [6], ports: [{ from: 1, to: 65535 }] }), rule({ protocols: [6], ports: [{ from: 8081, to: 8081 }] }, { allow: false, deny: true, ruleId: 2 })],
      "k", NOW,
    );
    // 1..65535 minus 8081: 16 + the deny block + the pieces around it.
    const deny = set.blocks.filter((b) => b.deny);
    expect(deny).toEqual([expect.objectContaining({ proto: 6, port: 8081, portBits: 16, ruleId: 2 })]);
    expect(set.blocks.length).toBeLessThanOrEqual(16 + 30);
  });
});

describe("scope compiler: ids, flags and wire", () => {
  it("equal scoped-rule sets share one id; the kind flags follow the rules", () => {
    const web = rule({ protocols: [6], ports: [{ from: 6379, to: 6379 }], users: [{ id: 33, name: "web" }] });
    const grp = rule({ groups: [{ id: 5, name: null }] }, { ruleId: 2 });
    const out = compileScopes([entry(1, [web]), entry(2, [web]), entry(3, [web, grp]), entry(4, [])], new ScopeRegistry(), NOW);
    const ids = out.entries.map((e) => e.scopeId ?? 0);
    expect(ids).toEqual([1, 1, 2, 0]);
    expect(out.entries[0]!.scopeKinds).toBe(ENTRY_SCOPE_UID);
    expect(out.entries[2]!.scopeKinds).toBe(ENTRY_SCOPE_UID | ENTRY_SCOPE_GID);
    expect(out.scopeWire.filter((e) => e.scope === 1)).toHaveLength(1);
    const any = compileScopes([entry(1, [rule({ protocols: [17] })])], new ScopeRegistry(), NOW);
    expect(any.entries[0]!.scopeKinds).toBe(ENTRY_SCOPE_ANY);
  });

  it("serialises the contract's key: kind, scope LE, principal LE, proto, port BE; prefixlen after the gen byte", () => {
    const e: ScopeWireEntry = { scope: 0x0102, kind: 1, principal: 0x0a0b0c0d, proto: 6, port: 8080, portBits: 16, allow: true, deny: false, ruleId: 7, expiresAtMs: null };
    expect(scopeWirePrefixLen(e)).toBe(80);
    expect(Buffer.from(scopeWireKey(e)).toString("hex")).toBe("01" + "0201" + "0d0c0b0a" + "06" + "1f90");
    expect(scopeWirePrefixLen({ ...e, proto: null, portBits: 0, port: 0 })).toBe(56);
    expect(scopeWirePrefixLen({ ...e, portBits: 0, port: 0 })).toBe(64);
    expect(Buffer.from(scopeWireKey({ ...e, port: 1027, portBits: 14 })).subarray(8).toString("hex")).toBe("0400"); // 1024..1027
    const b = Buffer.alloc(40);
    writeScopeWireEntry(new DataView(b.buffer), 0, { ...e, deny: true, allow: false, expiresAtMs: 5000 });
    expect([b[0], b[1], b[2], b.readUInt32LE(4), Number(b.readBigUInt64LE(8))]).toEqual([2, 80, 2, 7, 5000]);
    expect(b.subarray(16, 26).toString("hex")).toBe("0102010d0c0b0a061f90");
  });

  it("serialises exactly as the kernel tests' hand-built entries (test/helpers/scope-wire-fixture.ts, lane K)", () => {
    const es: ScopeWireEntry[] = [
      { scope: 3, kind: 0, principal: 0, proto: null, port: 0, portBits: 0, allow: true, deny: false, ruleId: 4, expiresAtMs: null },
      { scope: 3, kind: 1, principal: 1000, proto: 6, port: 8080, portBits: 16, allow: false, deny: true, ruleId: 5, expiresAtMs: null },
      { scope: 7, kind: 2, principal: 65534, proto: 17, port: 0, portBits: 0, allow: true, deny: false, ruleId: 6, expiresAtMs: null },
      { scope: 9, kind: 0, principal: 0, proto: 6, port: 1024, portBits: 6, allow: true, deny: false, ruleId: 7, expiresAtMs: null },
    ];
    const hand = handBuilt(es.map((e) => ({ scope: e.scope, kind: e.kind, principal: e.principal, proto: e.proto, port: e.port, portBits: e.portBits, allow: e.allow, deny: e.deny, ruleId: e.ruleId })));
    expect(Buffer.from(encodeScopeWire(es)).toString("hex")).toBe(hand.toString("hex"));
  });

  it("a learned address refreshed with a new TTL keeps its scope id (deadlines at the entry's are 'never')", () => {
    const reg = new ScopeRegistry();
    const learned = (last: number, ttl: number): FilterEntry =>
      entry(last, [rule({ protocols: [6], ports: [{ from: 443, to: 443 }] }, { ruleId: 9, expiresAtMs: NOW + ttl })], { expiresAtMs: NOW + ttl });
    const a = reg.replace([learned(1, 300_000)], NOW);
    a.commit();
    const b = reg.upsert([learned(1, 600_000), learned(2, 60_000)], NOW + 1000);
    expect(b.entries.map((e) => e.scopeId)).toEqual([1, 1]);
    expect(b.entries.map((e) => e.expiresAtMs)).toEqual([NOW + 600_000, NOW + 60_000]);
    expect(b.scopeWire).toEqual([]);
    expect(a.scopeWire[0]!.expiresAtMs).toBeNull();
  });

  it("shorter-lived unscoped rules fold into the set so the entry lives as long as its scoped rules", () => {
    const out = compileScopes([entry(1, [rule({ protocols: [6] }, { ruleId: 3 })], { allow: true, ruleId: 4, expiresAtMs: NOW + 100 })], new ScopeRegistry(), NOW);
    const e = out.entries[0]!;
    expect([e.allow, e.deny, e.expiresAtMs, e.scopeKinds]).toEqual([false, false, null, ENTRY_SCOPE_ANY]);
    expect(out.scopeWire).toContainEqual(expect.objectContaining({ proto: null, ruleId: 4, expiresAtMs: NOW + 100 }));
  });

  it("an UPSERT that leaves a set unused removes its entries; the id is reused only after released()", () => {
    const reg = new ScopeRegistry();
    const r1 = rule({ protocols: [6], ports: [{ from: 80, to: 80 }] });
    const r2 = rule({ protocols: [6], ports: [{ from: 81, to: 81 }] }, { ruleId: 2 });
    reg.replace([entry(1, [r1]), entry(2, [r2])], NOW).commit();
    const p = reg.upsert([entry(2, [r1])], NOW);
    expect(p.entries[0]!.scopeId).toBe(1);
    expect(p.scopeRemove).toEqual([expect.objectContaining({ scope: 2, port: 81 })]);
    p.commit();
    expect(reg.scopeEntries).toBe(1);
    const q = reg.upsert([entry(3, [r2])], NOW);
    expect(q.entries[0]!.scopeId).toBe(3); // 2 not released yet
    const d = reg.delete([entry(3, []).cidr]);
    expect(d.scopeRemove).toEqual([]); // q was never committed: nothing points at 3
    p.released();
    const r = reg.upsert([entry(4, [r2])], NOW);
    expect(r.entries[0]!.scopeId).toBe(2);
    r.commit();
    const del = reg.delete([entry(4, []).cidr, entry(1, []).cidr]);
    expect(del.scopeRemove.map((e) => e.scope)).toEqual([2]);
  });

  it("too many scope entries or ids: a clear error before anything is written, the registry unchanged", () => {
    const reg = new ScopeRegistry();
    const wide = (i: number): FilterEntry =>
      entry(i % 250, [rule({ protocols: [6, 17, 132], ports: [{ from: 1, to: 65534 }], users: Array.from({ length: 4 }, (_, u) => ({ id: u, name: null })) }, { ruleId: i })]);
    const many = Array.from({ length: 130 }, (_, i) => ({ ...wide(i), cidr: { family: 4 as const, addr: new Uint8Array([10, 9, i, 0]), prefixLen: 24 } }));
    let err: unknown;
    try {
      reg.replace(many, NOW);
    } catch (e) {
      err = e;
    }
    expect(isNetfenceError(err) && err.code).toBe("RESOURCE_EXHAUSTED");
    expect(String((err as Error).message)).toContain(String(SCOPE_GEN_CAP));
    expect(reg.scopeEntries).toBe(0);
    // Ids: every set has at least one entry, so only ids burned by dropped plans can run out.
    reg.replace([entry(1, [rule({ protocols: [6] })])], NOW).commit();
    for (let i = 2; i <= 65535; i++) reg.upsert([entry(2, [rule({ protocols: [6] }, { ruleId: i })])], NOW); // never committed
    expect(() => reg.upsert([entry(2, [rule({ protocols: [17] })])], NOW)).toThrow(/65535 different rule scopes/);
    expect(reg.upsert([entry(3, [rule({ protocols: [6] })])], NOW).entries[0]!.scopeId).toBe(1); // an existing set still works
  });

  it("after adoption, scoped UPSERTs wait for a REPLACE", () => {
    const reg = new ScopeRegistry();
    reg.markUnknown();
    expect(() => reg.upsert([entry(1, [rule({ protocols: [6] })])], NOW)).toThrow(/replace the policy/);
    expect(reg.upsert([entry(1, [])], NOW).entries).toHaveLength(1);
    reg.replace([entry(1, [rule({ protocols: [6] })])], NOW).commit();
    expect(reg.upsert([entry(2, [rule({ protocols: [6] })])], NOW).entries[0]!.scopeId).toBe(1);
  });

  it("invalid scoped rules are refused naming the rule", () => {
    expect(() => compileScopes([entry(1, [rule({ protocols: [6], ports: [{ from: 0, to: 5 }] }, { ruleId: 12 })])], new ScopeRegistry(), NOW)).toThrow(/scoped rule 12: invalid port range/);
    expect(() => compileScopes([entry(1, [rule({ users: [{ id: 0xffffffff, name: null }] })])], new ScopeRegistry(), NOW)).toThrow(/invalid user or group id/);
  });
});
