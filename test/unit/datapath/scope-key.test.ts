import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { scopeKey, type RuleScope } from "@netfence/proto/parse";
import type { ScopedRuleEntry } from "../../../daemon/src/policy/compiled.js";
import { scopeSetKey } from "../../../daemon/src/datapath/scope-key.js";

// The content key decides which scoped-rule sets the registry deduplicates: its binary form
// (scope-key.ts) must say "equal" exactly when the text key it replaced did.
/** The text key before scope-key.ts (scope-compile.ts until this change), the reference. */
function textKey(rules: readonly ScopedRuleEntry[]): string {
  const ruleKey = (r: ScopedRuleEntry): string =>
    (scopeKey(r.scope) || "*") + "|" + (r.allow ? "a" : "") + (r.deny ? "d" : "") + "|" + r.ruleId + "|" + (r.expiresAtMs ?? "-");
  return rules
    .map((r) => ({ id: r.ruleId, text: ruleKey(r) }))
    .sort((a, b) => a.id - b.id || (a.text < b.text ? -1 : a.text > b.text ? 1 : 0))
    .map((k) => k.text)
    .join("\n");
}

const small = <T>(xs: fc.Arbitrary<T>) => fc.array(xs, { maxLength: 2 });
const scopeArb: fc.Arbitrary<RuleScope> = fc.record({
  protocols: small(fc.constantFrom(6, 17, 1)),
  ports: small(fc.constantFrom(1, 80, 443, 65535).chain((from) => fc.constantFrom(from, 65535).map((to) => ({ from, to })))),
  users: small(fc.record({ id: fc.constantFrom(0, 1, 1000, 0xfffffffe), name: fc.constantFrom<string | null>(null, "a", "b") })),
  groups: small(fc.record({ id: fc.constantFrom(0, 5), name: fc.constantFrom<string | null>(null, "g") })),
});
const ruleArb: fc.Arbitrary<ScopedRuleEntry> = fc.record({
  scope: scopeArb,
  allow: fc.boolean(),
  deny: fc.boolean(),
  ruleId: fc.constantFrom(0, 1, 2, 7, 0xffffffff),
  expiresAtMs: fc.constantFrom<number | null>(null, 1_800_000_000_000, 1_800_000_000_000.5),
});
const setArb = fc.array(ruleArb, { minLength: 1, maxLength: 4 });

/** `a` with one field of one rule changed (to a value that may equal the old one), or reordered. */
function mutate(a: ScopedRuleEntry[], field: number, at: number, v: number): ScopedRuleEntry[] {
  const i = at % a.length;
  const r = a[i]!;
  const s = r.scope;
  const one = <T>(xs: readonly T[], f: (x: T) => T): T[] => (xs.length ? xs.map((x, j) => (j === 0 ? f(x) : x)) : xs.slice());
  const changed: ScopedRuleEntry = [
    { ...r, scope: { ...s, protocols: one(s.protocols, () => [6, 17, 1][v % 3]!) } },
    { ...r, scope: { ...s, ports: one(s.ports, (p) => ({ from: [1, 80][v % 2]!, to: p.to })) } },
    { ...r, scope: { ...s, ports: one(s.ports, (p) => ({ from: p.from, to: Math.max(p.from, [443, 65535][v % 2]!) })) } },
    { ...r, scope: { ...s, users: one(s.users, () => ({ id: [0, 1][v % 2]!, name: null })) } },
    { ...r, scope: { ...s, groups: one(s.groups, () => ({ id: [0, 5][v % 2]!, name: null })) } },
    { ...r, allow: v % 2 === 0 },
    { ...r, deny: v % 2 === 0 },
    { ...r, ruleId: [0, 1, 2][v % 3]! },
    { ...r, expiresAtMs: [null, 1_800_000_000_000][v % 2]! },
    { ...r, scope: { ...s, groups: [...s.groups, { id: 5, name: null }] } },
  ][field % 10]!;
  return a.map((x, j) => (j === i ? changed : x)).reverse();
}

describe("scope set content key (scope-key.ts)", () => {
  it("equal exactly when the text key is equal (random sets, and each set against itself with one field changed)", () => {
    fc.assert(
      fc.property(setArb, setArb, (a, b) => {
        expect(scopeSetKey(a) === scopeSetKey(b)).toBe(textKey(a) === textKey(b));
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(setArb, fc.nat(), fc.nat(), fc.nat(), (a, field, at, v) => {
        const b = mutate(a, field, at, v);
        expect(scopeSetKey(a) === scopeSetKey(b)).toBe(textKey(a) === textKey(b));
      }),
      { numRuns: 5000 },
    );
  });

  it("order-independent and names ignored", () => {
    fc.assert(
      fc.property(setArb, (a) => {
        const renamed = a.map((r) => ({ ...r, scope: { ...r.scope, users: r.scope.users.map((u) => ({ id: u.id, name: "x" })) } }));
        expect(scopeSetKey([...a].reverse())).toBe(scopeSetKey(a));
        expect(scopeSetKey(renamed)).toBe(scopeSetKey(a));
      }),
    );
  });

  it("a 10,000-rule set: one key, the same for its reversed order, another for a changed port", () => {
    const rule = (i: number, port: number): ScopedRuleEntry => ({
      scope: { protocols: [6], ports: [{ from: port, to: port }], users: [{ id: 10000 + (i % 1000), name: null }], groups: [] },
      allow: true, deny: false, ruleId: i + 1, expiresAtMs: null,
    });
    const rules = Array.from({ length: 10_000 }, (_, i) => rule(i, 10000 + i));
    const changed = rules.map((r, i) => (i === 5000 ? rule(i, 9999) : r));
    expect(scopeSetKey([...rules].reverse())).toBe(scopeSetKey(rules));
    expect(scopeSetKey(changed)).not.toBe(scopeSetKey(rules));
  });
});
