import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { formatCidr, parseCidr, parseRuleScope, type Cidr, type RuleScope, type RuleScopeInput } from "@netfence/proto/parse";
import { PolicyState } from "../../../daemon/src/policy/policy-state.js";
import { planCommand, type KernelOp } from "../../../daemon/src/plan/command-plan.js";
import { planExpiry } from "../../../daemon/src/plan/expiry-plan.js";
import { basicGuard } from "../../../daemon/src/plan/learned-guard.js";
import { planLearned } from "../../../daemon/src/plan/learned-plan.js";
import type { FilterEntry } from "../../../daemon/src/policy/compiled.js";
import type { AttachmentPolicy, CidrRule, DomainRule, PolicyCommand } from "../../../daemon/src/policy/policy.js";
import { entriesVerdict, packetAt, referenceVerdict, type Packet, type RefRule } from "./scope-semantics.js";

// Issue 15: scoped rules in the policy model — identity (cidr, scope), compile to FilterEntry.scoped
// with a rule id each, learned addresses with their domain rules' scopes, the rebinding guard, expiry.

const T0 = 1_700_000_000_000;
const DNS = { mode: "allowlist" as const, allowDomains: [] as DomainRule[], denyDomains: [] as DomainRule[], upstreams: [] as string[] };
const base: AttachmentPolicy = { mode: "allowlist", audit: false, allowCidrs: [], denyCidrs: [], dns: DNS };
const sc = (input: RuleScopeInput): RuleScope => parseRuleScope(input)!;
const rule = (cidr: string, scope?: RuleScopeInput, expiresAtMs: number | null = null): CidrRule => {
  const s = scope === undefined ? undefined : parseRuleScope(scope);
  return s === undefined ? { cidr: parseCidr(cidr), expiresAtMs } : { cidr: parseCidr(cidr), expiresAtMs, scope: s };
};
const TCP443 = { protocols: ["tcp"], ports: [443] };

/** Applies a plan's kernel op to a map of entries (what the driver would hold). */
function applyOp(kernel: Map<string, FilterEntry>, op: KernelOp): void {
  switch (op.kind) {
    case "upsert":
      for (const e of op.entries) kernel.set(formatCidr(e.cidr), e);
      return;
    case "delete":
      for (const c of op.cidrs) kernel.delete(formatCidr(c));
      return;
    case "replace":
      kernel.clear();
      for (const e of op.policy.entries) kernel.set(formatCidr(e.cidr), e);
      return;
    default:
      return;
  }
}

function run(st: PolicyState, kernel: Map<string, FilterEntry>, command: PolicyCommand, nowMs = T0): void {
  const plan = planCommand(st, command, nowMs, basicGuard());
  applyOp(kernel, plan.op);
  plan.commit();
}

describe("scoped CIDR rules: identity and compile", () => {
  it("AllowCIDR of the same CIDR with another scope adds a rule; the same scope replaces; RemoveCIDR removes every scope", () => {
    const st = new PolicyState(base);
    const kernel = new Map<string, FilterEntry>();
    run(st, kernel, { kind: "allow-cidr", rule: rule("10.0.0.0/24") });
    run(st, kernel, { kind: "allow-cidr", rule: rule("10.0.0.0/24", TCP443) });
    run(st, kernel, { kind: "deny-cidr", rule: rule("10.0.0.0/24", { protocols: ["udp"] }) });
    expect(st.toPolicy().allowCidrs).toHaveLength(2);
    expect(st.toPolicy().denyCidrs).toHaveLength(1);
    let e = kernel.get("10.0.0.0/24")!;
    expect(e.allow).toBe(true); // the unscoped rule
    expect(e.deny).toBe(false); // the scoped deny is not an unscoped one
    const view = (x: FilterEntry): unknown[] => x.scoped!.map((s) => [s.scope.protocols, s.allow, s.deny]).sort((a, b) => String(a[0]).localeCompare(String(b[0])));
    expect(view(e)).toEqual([[[17], false, true], [[6], true, false]]);
    // Deny of the tcp/443 scope replaces its allow; the others stay.
    run(st, kernel, { kind: "deny-cidr", rule: rule("10.0.0.0/24", TCP443) });
    e = kernel.get("10.0.0.0/24")!;
    expect(e.allow).toBe(true);
    expect(view(e)).toEqual([[[17], false, true], [[6], false, true]]);
    // Unscoped deny replaces the unscoped allow only.
    run(st, kernel, { kind: "deny-cidr", rule: rule("10.0.0.0/24") });
    e = kernel.get("10.0.0.0/24")!;
    expect([e.allow, e.deny, e.scoped!.length]).toEqual([false, true, 2]);
    run(st, kernel, { kind: "remove-cidr", cidr: parseCidr("10.0.0.0/24") });
    expect(kernel.size).toBe(0);
    expect(st.rules.size).toBe(0);
    expect(st.compile(T0).entries).toEqual([]);
  });

  it("each scoped rule has its own rule id (hit counts per rule), stable while it stays", () => {
    const st = new PolicyState({ ...base, allowCidrs: [rule("10.0.0.0/24"), rule("10.0.0.0/24", TCP443), rule("10.0.0.0/24", { protocols: ["udp"], ports: [53] })] });
    const [e] = st.compile(T0).entries;
    const ids = [e!.ruleId!, ...e!.scoped!.map((s) => s.ruleId)];
    expect(new Set(ids).size).toBe(3);
    expect(ids.every((id) => id >= 16)).toBe(true);
    expect(st.ruleIds.keyOf(e!.scoped![0]!.ruleId)).toMatch(/^allow-cidr 10\.0\.0\.0\/24 (tcp\/443|udp\/53)$/);
    const again = st.compile(T0).entries[0]!;
    expect([again.ruleId, ...again.scoped!.map((s) => s.ruleId)]).toEqual(ids);
  });

  it("a prefix with only scoped rules: allow and deny both false, scoped set, deadline = the latest of its rules", () => {
    const st = new PolicyState({ ...base, allowCidrs: [rule("10.0.0.0/24", TCP443, T0 + 5000), rule("10.0.0.0/24", { protocols: ["icmp"] }, T0 + 9000)] });
    const [e] = st.compile(T0).entries;
    expect([e!.allow, e!.deny, e!.expiresAtMs, e!.scoped!.length]).toEqual([false, false, T0 + 9000, 2]);
  });

  it("TTL expiry takes scoped rules one by one; the prefix goes with its last rule", () => {
    const st = new PolicyState({ ...base, allowCidrs: [rule("10.0.0.0/24", TCP443, T0 + 5000), rule("10.0.0.0/24", { protocols: ["icmp"] }, T0 + 9000)] });
    const p1 = planExpiry(st, T0 + 6000)!;
    expect(p1.upserts[0]!.scoped!.map((s) => s.scope.protocols)).toEqual([[1]]);
    expect(p1.allowsExpired.map(formatCidr)).toEqual(["10.0.0.0/24"]);
    p1.commit();
    const p2 = planExpiry(st, T0 + 9500)!;
    expect(p2.deletes.map(formatCidr)).toEqual(["10.0.0.0/24"]);
    p2.commit();
    expect(st.rules.size).toBe(0);
  });

  it("a BulkUpdate restating the same scoped rules is unchanged; another scope is a change", () => {
    const rules = { allowCidrs: [rule("10.0.0.0/24", TCP443)], denyCidrs: [] };
    const st = new PolicyState({ ...base, ...rules });
    const same = planCommand(st, { kind: "bulk-update", mode: "allowlist", audit: false, ...rules, dns: null }, T0);
    expect(same.unchanged).toBe(true);
    const other = planCommand(st, { kind: "bulk-update", mode: "allowlist", audit: false, allowCidrs: [rule("10.0.0.0/24", { protocols: ["tcp"], ports: [444] })], denyCidrs: [], dns: null }, T0);
    expect(other.unchanged).toBeUndefined();
    expect(other.op.kind).toBe("replace");
  });
});

describe("keep or sever", () => {
  it("AttachmentPolicy.established → FilterPolicy.keepEstablished; a BulkUpdate restates it (absent = sever)", () => {
    const st = new PolicyState({ ...base, established: "keep" });
    expect(st.compile(T0).keepEstablished).toBe(true);
    const sever = planCommand(st, { kind: "bulk-update", mode: "allowlist", audit: false, allowCidrs: [], denyCidrs: [], dns: null }, T0);
    expect(sever.op.kind).toBe("replace");
    expect(sever.op.kind === "replace" && sever.op.policy.keepEstablished).toBeFalsy();
    sever.commit();
    expect(st.established).toBe("sever");
    const keep = planCommand(st, { kind: "bulk-update", mode: "allowlist", audit: false, allowCidrs: [], denyCidrs: [], dns: null, established: "keep" }, T0);
    expect(keep.op.kind === "replace" && keep.op.policy.keepEstablished).toBe(true);
    keep.commit();
    expect(st.toPolicy().established).toBe("keep");
    expect(new PolicyState(base).compile(T0).keepEstablished).toBeUndefined();
  });
});

describe("DNS-learned addresses carry their domain rules' scopes", () => {
  const web: DomainRule = { domain: "web.test", includeSubdomains: false, scope: sc(TCP443) };
  const dnsRule: DomainRule = { domain: "dns.test", includeSubdomains: true, scope: sc({ protocols: ["udp"], ports: [53] }) };
  const open: DomainRule = { domain: "open.test", includeSubdomains: false };
  const policy: AttachmentPolicy = { ...base, dns: { ...DNS, allowDomains: [web, dnsRule, open] } };
  const learn = (st: PolicyState, name: string, addr: string): FilterEntry[] => {
    const plan = planLearned(st, [{ name, addresses: [parseCidr(addr)], ttlSeconds: 60 }], T0, { learnedQuota: Infinity, guard: basicGuard() });
    plan.commit();
    return [...plan.upserts];
  };

  it("a name allowed on tcp/443 only → its /32 gets a scoped entry; an unscoped name → unscoped as today; one address of two names → both", () => {
    const st = new PolicyState(policy);
    const [w] = learn(st, "web.test", "192.0.2.1");
    expect([w!.allow, w!.scoped!.length, w!.scoped![0]!.scope.ports]).toEqual([false, 1, [{ from: 443, to: 443 }]]);
    const [o] = learn(st, "open.test", "192.0.2.2");
    expect([o!.allow, o!.scoped]).toEqual([true, undefined]);
    const [both] = learn(st, "a.dns.test", "192.0.2.1"); // the subdomain rule's scope, on the address web.test holds too
    expect(both!.allow).toBe(false);
    expect(both!.scoped!.map((s) => s.scope.protocols).sort()).toEqual([[17], [6]]);
    const p443 = packetAt("192.0.2.1", 6, 443);
    expect(entriesVerdict(st.compile(T0).entries, p443, T0)).toBe("allow");
    expect(entriesVerdict(st.compile(T0).entries, packetAt("192.0.2.1", 17, 53), T0)).toBe("allow");
    expect(entriesVerdict(st.compile(T0).entries, packetAt("192.0.2.1", 6, 80), T0)).toBe("none");
  });

  it("changing a domain rule's scope recompiles the addresses it learned", () => {
    const st = new PolicyState(policy);
    learn(st, "web.test", "192.0.2.1");
    const plan = planCommand(st, { kind: "allow-domain", rule: { domain: "web.test", includeSubdomains: false, scope: sc({ protocols: ["tcp"], ports: [8443] }) } }, T0);
    expect(plan.op.kind).toBe("replace");
    const e = plan.op.kind === "replace" ? plan.op.policy.entries.find((x) => formatCidr(x.cidr) === "192.0.2.1/32") : undefined;
    expect(e!.scoped![0]!.scope.ports).toEqual([{ from: 8443, to: 8443 }]);
  });

  it("the rebinding guard: a scoped deny covering the address still refuses it; a prefix with only scoped allows does not open it", () => {
    const st = new PolicyState({ ...policy, denyCidrs: [rule("192.0.2.0/24", { protocols: ["tcp"], ports: [22] })] });
    const plan = planLearned(st, [{ name: "open.test", addresses: [parseCidr("192.0.2.9")], ttlSeconds: 60 }], T0, { learnedQuota: Infinity, guard: basicGuard() });
    expect(plan.refused.map((r) => r.reason)).toEqual(["deny-cidr"]);
    // Loopback stays refused under a scoped allow of 127.0.0.0/8 (the special ranges are still checked).
    const st2 = new PolicyState({ ...policy, allowCidrs: [rule("127.0.0.0/8", TCP443)] });
    const p2 = planLearned(st2, [{ name: "open.test", addresses: [parseCidr("127.0.0.5")], ttlSeconds: 60 }], T0, { learnedQuota: Infinity, guard: basicGuard() });
    expect(p2.refused.map((r) => r.reason)).toEqual(["loopback"]);
    // An unscoped allow still opens it explicitly.
    const st3 = new PolicyState({ ...policy, allowCidrs: [rule("127.0.0.0/8")] });
    const p3 = planLearned(st3, [{ name: "open.test", addresses: [parseCidr("127.0.0.5")], ttlSeconds: 60 }], T0, { learnedQuota: Infinity, guard: basicGuard() });
    expect(p3.refused).toEqual([]);
  });
});

// ------------------------------------------------------------------ property: compile = semantics

const ADDRS = ["10.0.0.0", "10.0.0.4", "10.0.0.5", "10.0.1.0", "10.0.1.7"];
const LENS = [8, 16, 23, 24, 30, 31, 32];
const arbCidr = fc.tuple(fc.constantFrom(...ADDRS), fc.constantFrom(...LENS)).map(([a, l]): Cidr => {
  const c = parseCidr(`${a}/32`);
  return parseCidr(`${maskV4(c.addr, l)}/${l}`);
});
function maskV4(addr: Uint8Array, len: number): string {
  const n = ((addr[0]! << 24) | (addr[1]! << 16) | (addr[2]! << 8) | addr[3]!) >>> 0;
  const m = len === 0 ? 0 : (n & (0xffffffff << (32 - len))) >>> 0;
  return [m >>> 24, (m >>> 16) & 255, (m >>> 8) & 255, m & 255].join(".");
}
const arbScopeInput: fc.Arbitrary<RuleScopeInput | undefined> = fc.option(
  fc.record({
    protocols: fc.subarray(["tcp", "udp", "icmp"]),
    ports: fc.subarray([22, "80-443", "8000-8100"] as (number | string)[]),
    users: fc.subarray([33, 1000]),
    groups: fc.subarray([50]),
  }).filter((s) => s.ports.length === 0 || !s.protocols.includes("icmp")),
  { nil: undefined },
);
const arbExpiry = fc.constantFrom<number | null>(null, null, T0 - 1, T0 + 1000);
const arbRule = fc.record({ cidr: arbCidr, deny: fc.boolean(), scope: arbScopeInput, expiresAtMs: arbExpiry }).map((r): RefRule => {
  const scope = parseRuleScope(r.scope);
  return scope === undefined ? { cidr: r.cidr, deny: r.deny, expiresAtMs: r.expiresAtMs } : { cidr: r.cidr, deny: r.deny, expiresAtMs: r.expiresAtMs, scope };
});
const arbPacket: fc.Arbitrary<Packet> = fc.record({
  host: fc.constantFrom("10.0.0.0", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.1.7", "10.0.2.1", "10.1.0.1"),
  proto: fc.constantFrom(6, 17, 1),
  port: fc.constantFrom(22, 53, 80, 443, 444, 8050),
  uid: fc.constantFrom(0, 33, 1000),
  gid: fc.constantFrom(0, 50),
}).map((p) => packetAt(p.host, p.proto, p.proto === 1 ? 0 : p.port, p.uid, p.gid));
const toCidrRule = (r: RefRule): CidrRule => (r.scope === undefined ? { cidr: r.cidr, expiresAtMs: r.expiresAtMs } : { cidr: r.cidr, expiresAtMs: r.expiresAtMs, scope: r.scope });

describe("property: compiled entries decide every packet as the rules say", () => {
  it("a whole policy (BulkUpdate / SubscribedAck lists)", () => {
    fc.assert(
      fc.property(fc.array(arbRule, { maxLength: 12 }), fc.array(arbPacket, { minLength: 1, maxLength: 20 }), (rules, packets) => {
        const st = new PolicyState({ ...base, allowCidrs: rules.filter((r) => !r.deny).map(toCidrRule), denyCidrs: rules.filter((r) => r.deny).map(toCidrRule) });
        const entries = st.compile(T0).entries;
        // A list may name one (prefix, scope) twice: the longest-lived rule of each kind is kept.
        const kept = st.toPolicy();
        const ref: RefRule[] = [...kept.allowCidrs.map((r) => ({ ...r, deny: false })), ...kept.denyCidrs.map((r) => ({ ...r, deny: true }))];
        for (const p of packets) expect(entriesVerdict(entries, p, T0)).toBe(referenceVerdict(ref, p, T0));
      }),
      { numRuns: 400 },
    );
  });

  it("a sequence of commands, applied incrementally as the kernel ops the plans produce", () => {
    type Cmd = { kind: "allow" | "deny"; rule: RefRule } | { kind: "remove"; cidr: Cidr };
    const arbCmd: fc.Arbitrary<Cmd> = fc.oneof(
      { weight: 4, arbitrary: arbRule.map((r): Cmd => ({ kind: r.deny ? "deny" : "allow", rule: { ...r, expiresAtMs: null } })) },
      { weight: 1, arbitrary: arbCidr.map((cidr): Cmd => ({ kind: "remove", cidr })) },
    );
    fc.assert(
      fc.property(fc.array(arbCmd, { maxLength: 15 }), fc.array(arbPacket, { minLength: 1, maxLength: 20 }), (cmds, packets) => {
        const st = new PolicyState(base);
        const kernel = new Map<string, FilterEntry>();
        // The model: a rule is named by (cidr, scope); a command replaces it; remove takes the whole prefix.
        const model = new Map<string, RefRule>();
        const scopeText = (s: RuleScope | undefined): string => JSON.stringify(s ?? null);
        for (const c of cmds) {
          if (c.kind === "remove") {
            for (const [k, r] of model) if (formatCidr(r.cidr) === formatCidr(c.cidr)) model.delete(k);
            run(st, kernel, { kind: "remove-cidr", cidr: c.cidr });
          } else {
            model.set(`${formatCidr(c.rule.cidr)} ${scopeText(c.rule.scope)}`, c.rule);
            run(st, kernel, { kind: c.kind === "allow" ? "allow-cidr" : "deny-cidr", rule: toCidrRule(c.rule) });
          }
        }
        const ref = [...model.values()];
        for (const p of packets) {
          expect(entriesVerdict(kernel.values(), p, T0)).toBe(referenceVerdict(ref, p, T0));
          expect(entriesVerdict(st.compile(T0).entries, p, T0)).toBe(referenceVerdict(ref, p, T0));
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("property: DNS-learned addresses decide packets as allow rules with their domain rules' scopes", () => {
  it("random domain rules (scoped or not), learned names and CIDR rules", () => {
    const arbDomainScope = arbScopeInput.map((s) => parseRuleScope(s));
    const names = ["a.test", "b.test", "x.a.test", "c.test"];
    fc.assert(
      fc.property(
        fc.array(fc.record({ domain: fc.constantFrom("a.test", "b.test", "c.test"), sub: fc.boolean(), scope: arbDomainScope }), { maxLength: 4 }),
        fc.array(fc.record({ name: fc.constantFrom(...names), host: fc.constantFrom("10.0.0.4", "10.0.0.5", "10.0.1.7") }), { maxLength: 6 }),
        fc.array(arbRule, { maxLength: 6 }),
        fc.array(arbPacket, { minLength: 1, maxLength: 20 }),
        (domains, learned, rules, packets) => {
          const allowDomains: DomainRule[] = domains.map((d) => (d.scope === undefined ? { domain: d.domain, includeSubdomains: d.sub } : { domain: d.domain, includeSubdomains: d.sub, scope: d.scope }));
          const st = new PolicyState({
            ...base,
            allowCidrs: rules.filter((r) => !r.deny).map(toCidrRule),
            denyCidrs: rules.filter((r) => r.deny).map(toCidrRule),
            dns: { ...DNS, allowDomains },
          });
          for (const l of learned) st.learned.add(l.name, parseCidr(l.host), T0 + 60_000);
          const kept = st.toPolicy();
          const ref: RefRule[] = [...kept.allowCidrs.map((r) => ({ ...r, deny: false })), ...kept.denyCidrs.map((r) => ({ ...r, deny: true }))];
          // The reference: a learned address is an allow rule at /32 for each scope of the most specific
          // domain rule naming its name (rule-ids.ts learnedRuleKey); unscoped when that rule is, or when none does.
          for (const l of learned) {
            const exact = allowDomains.filter((d) => d.domain === l.name);
            const parent = l.name.endsWith(".a.test") ? allowDomains.filter((d) => d.domain === "a.test" && d.includeSubdomains) : [];
            const deciding = exact.length > 0 ? exact : parent;
            const cidr = parseCidr(l.host);
            if (deciding.length === 0 || deciding.some((d) => d.scope === undefined)) ref.push({ cidr, deny: false, expiresAtMs: T0 + 60_000 });
            else for (const d of deciding) ref.push({ cidr, deny: false, expiresAtMs: T0 + 60_000, scope: d.scope! });
          }
          const entries = st.compile(T0).entries;
          for (const p of packets) expect(entriesVerdict(entries, p, T0)).toBe(referenceVerdict(ref, p, T0));
        },
      ),
      { numRuns: 300 },
    );
  });
});
