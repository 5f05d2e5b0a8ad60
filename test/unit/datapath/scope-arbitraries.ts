import fc from "fast-check";
import type { PortRange, RuleScope } from "@netfence/proto/parse";
import type { FilterEntry, ScopedRuleEntry } from "../../../daemon/src/policy/compiled.js";

// Random scoped policies for the scope compiler's properties (scope-compile.test.ts) and its inverse's
// (scope-decode.test.ts): nested prefixes, protocols, port ranges at the block edges, users, groups,
// deadlines around `now`. One generator for both, so that the two properties cover the same policies.

export const PORT_PROTOS = [6, 17, 132];
export const UIDS = [0, 1, 2, 1000];
export const GIDS = [0, 1, 5, 100];
export const PORT_EDGES = [1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 443, 1000, 1023, 1024, 2000, 65534, 65535];

export const portArb = fc.constantFrom(...PORT_EDGES);
export const rangeArb: fc.Arbitrary<PortRange> = fc.tuple(portArb, portArb).map(([a, b]) => ({ from: Math.min(a, b), to: Math.max(a, b) }));

export interface ScopedPolicyArbs {
  readonly scopeArb: fc.Arbitrary<RuleScope>;
  readonly ruleArb: fc.Arbitrary<ScopedRuleEntry>;
  readonly policyArb: fc.Arbitrary<FilterEntry[]>;
}

/**
 * `prefixes`: the nested prefixes entries may sit on; `ports`: how a scope's port ranges are given (as
 * drawn, or merged the way the parser merges them); `minRuleId`: the scoped rules' lowest id.
 */
export function scopedPolicyArbs(
  now: number,
  opts: { prefixes: ReadonlyArray<[number[], number]>; minRuleId: number; ports: (ranges: PortRange[]) => PortRange[] },
): ScopedPolicyArbs {
  const PREFIXES = opts.prefixes;
  const deadlineArb = fc.constantFrom<number | null>(null, null, now - 10, now + 50, now + 100, now + 200);
  const scopeArb: fc.Arbitrary<RuleScope> = fc
    .record({
      withPorts: fc.boolean(),
      ports: fc.array(rangeArb, { minLength: 1, maxLength: 3 }),
      protos: fc.subarray([1, 6, 17, 58, 132]),
      portProtos: fc.subarray(PORT_PROTOS),
      users: fc.subarray(UIDS, { maxLength: 2 }),
      groups: fc.subarray(GIDS, { maxLength: 2 }),
    })
    .map((r) => ({
      protocols: (r.withPorts ? r.portProtos : r.protos).sort((a, b) => a - b),
      ports: r.withPorts ? opts.ports(r.ports) : [],
      users: r.users.map((id) => ({ id, name: null })),
      groups: r.groups.map((id) => ({ id, name: null })),
    }));
  const actionArb = fc.constantFrom({ allow: true, deny: false }, { allow: false, deny: true }, { allow: true, deny: true }, { allow: true, deny: false });
  const ruleArb: fc.Arbitrary<ScopedRuleEntry> = fc
    .record({ scope: scopeArb, action: actionArb, ruleId: fc.integer({ min: opts.minRuleId, max: 40 }), expiresAtMs: deadlineArb })
    .map((r) => ({ scope: r.scope, ...r.action, ruleId: r.ruleId, expiresAtMs: r.expiresAtMs }));
  const entryArb = (i: number): fc.Arbitrary<FilterEntry | null> =>
    fc.option(
      fc.record({
        unscoped: fc.constantFrom({ allow: false, deny: false }, { allow: true, deny: false }, { allow: false, deny: true }),
        expiresAtMs: deadlineArb,
        scoped: fc.array(ruleArb, { maxLength: 4 }),
        ruleId: fc.integer({ min: 41, max: 60 }),
      }).map((r) => ({
        cidr: { family: 4 as const, addr: new Uint8Array(PREFIXES[i]![0]), prefixLen: PREFIXES[i]![1] },
        ...r.unscoped, expiresAtMs: r.expiresAtMs, ruleId: r.ruleId, scoped: r.scoped,
      })),
      { freq: 3 },
    );
  const policyArb = fc.tuple(...PREFIXES.map((_, i) => entryArb(i))).map((es) => es.filter((e): e is FilterEntry => e !== null));
  return { scopeArb, ruleArb, policyArb };
}
