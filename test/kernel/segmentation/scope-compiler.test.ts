import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatCidr, parseCidr, type RuleScope } from "@netfence/proto/parse";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import type { FilterEntry, ScopedRuleEntry } from "../../../daemon/src/policy/compiled.js";
import { ScopeRegistry } from "../../../daemon/src/datapath/scope-registry.js";
import { encodeScopeWire } from "../../../daemon/src/datapath/scope-wire.js";
import { type FilterSandbox, closeFilterSandbox, filterSandbox, noDns, policy } from "../../helpers/kernel-filter-fixture.js";
import { fixture, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import { bruteForce } from "../../unit/datapath/scope-sim.js";
import { Explainer } from "../../../daemon/src/explain/explainer.js";
import { PolicyState } from "../../../daemon/src/policy/policy-state.js";
import type { AttachmentRecord } from "../../../daemon/src/attachments/attachment-record.js";

// Issue 15: the daemon's scope compiler (datapath/scope-compile.ts, scope-registry.ts) against the
// real kernel. Scoped rules go through the compiler and KernelFilter.replaceCompiled/upsertCompiled/
// deleteCompiled into a cgroup attachment; processes of two users in the cgroup connect to TCP
// servers on the namespace's 127.0.0.1, and each outcome must be what the brute-force matcher of
// the rule semantics (test/unit/datapath/scope-sim.ts) says — including the fall-through from a
// scoped /32 that does not match to a /8, and deny winning over an allow for the same user — and
// `explain` (the kernel's LOOKUP for the question's protocol, port and owner) must give the verdict
// the packets got, and the daemon-side walk it lists the rules from must agree with it.
const PORT = 7431; // the sandbox's server-namespace echo server (unused here)
const P1 = 7441;
const P2 = 7442;
const P3 = 7443;
const A = { uid: 1, gid: 1 }; // daemon
const B = { uid: 65534, gid: 65534 }; // nobody

async function connectAs(sb: Sandbox, ns: string, cg: string, who: { uid: number; gid: number }, port: number, timeoutMs: number): Promise<boolean> {
  const r = await sb.exec(
    ns,
    ["setpriv", `--reuid=${who.uid}`, `--regid=${who.gid}`, "--clear-groups", process.execPath, fixture("probe.mjs"), "tcp", "127.0.0.1", String(port), String(timeoutMs)],
    { cgroup: cg, allowFail: true, timeoutMs: timeoutMs + 5000 },
  );
  return r.stdout.trim() === "ok";
}

const scope = (s: Partial<RuleScope>): RuleScope => ({ protocols: [], ports: [], users: [], groups: [], ...s });
const rule = (s: Partial<RuleScope>, action: "allow" | "deny", ruleId: number): ScopedRuleEntry => ({
  scope: scope(s), allow: action === "allow", deny: action === "deny", ruleId, expiresAtMs: null,
});
const at = (cidr: string, scoped: ScopedRuleEntry[]): FilterEntry => ({ cidr: parseCidr(cidr), allow: false, deny: false, expiresAtMs: null, scoped });
const TCP = 6;

describe("the scope compiler's output decides real connections as the rules say (cgroup, 127.0.0.1, two users)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  let cg: string;
  const id = `t-scomp-${process.pid}`;
  const registry = new ScopeRegistry();

  beforeAll(async () => {
    ctx = await filterSandbox("scmp", PORT);
    ({ sb, net, filter } = ctx);
    for (const p of [P1, P2, P3]) await sb.echoServer(net.workloadNs, p);
    cg = await sb.cgroup();
    await filter.attach({ id, slot: 43, target: { kind: "cgroup", path: cg }, dns: noDns }, policy("allowlist", []));
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  /** `netfenced explain` over this attachment: the kernel's LOOKUP plus the daemon-side scoped walk over `entries`. */
  function explainer(entries: FilterEntry[]): Explainer {
    const state = new PolicyState({ mode: "allowlist", audit: false, allowCidrs: [], denyCidrs: [], dns: { mode: "disabled", allowDomains: [], denyDomains: [], upstreams: [] } });
    const byKey = new Map(entries.map((e) => [formatCidr(e.cidr), e]));
    state.entryFor = (key: string) => byKey.get(key) ?? null;
    const rec = { id, state } as unknown as AttachmentRecord;
    return new Explainer({ filter, record: () => rec, now: () => Date.now() });
  }

  async function expectAsRules(entries: FilterEntry[], label: string): Promise<void> {
    const dst = new Uint8Array([127, 0, 0, 1]);
    const ex = explainer(entries);
    for (const who of [A, B]) {
      for (const port of [P1, P2, P3]) {
        const want = bruteForce(entries, { dst, proto: TCP, port, uid: who.uid, gid: who.gid }, Date.now()).action === "allow";
        const got = await connectAs(sb, net.workloadNs, cg, who, port, want ? 2000 : 600);
        expect(got, `${label}: uid ${who.uid} to 127.0.0.1:${port}`).toBe(want);
        const e = await ex.explain({ attachmentId: id, address: "127.0.0.1", domain: "", port, protocol: "tcp", user: String(who.uid), group: String(who.gid) });
        expect(e.address!.verdict, `${label}: explain for uid ${who.uid} to 127.0.0.1:${port}`).toBe(got ? "allowed" : "blocked");
        expect(e.address!.scopeSource).toBe("kernel");
        // The daemon's own walk (scope-walk.ts, for the listing) agrees with the kernel's LOOKUP.
        expect(e.address!.notes.filter((n) => n.includes("but the kernel at")), `${label}: uid ${who.uid} port ${port}`).toEqual([]);
      }
    }
  }

  it("REPLACE: user, port-range, deny-wins and fall-through rules", async () => {
    const entries = [
      at("127.0.0.1/32", [
        rule({ protocols: [TCP], ports: [{ from: P1, to: P3 }], users: [{ id: A.uid, name: "daemon" }] }, "allow", 101),
        rule({ protocols: [TCP], ports: [{ from: P2, to: P2 }] }, "deny", 102), // any owner: wins over 101 on P2
      ]),
      at("127.0.0.0/8", [rule({ protocols: [TCP], ports: [{ from: P3, to: P3 }] }, "allow", 103)]), // B reaches P3 through the /8
    ];
    const plan = registry.replace(entries, Date.now());
    await filter.replaceCompiled(id, policy("allowlist", []), plan.entries, encodeScopeWire(plan.scopeWire));
    plan.commit();
    expect((await filter.exactTables(id)).scopeCount).toBe(plan.scopeWire.length);
    // Spelled out once (the matcher must agree with the issue's own example):
    expect(bruteForce(entries, { dst: new Uint8Array([127, 0, 0, 1]), proto: TCP, port: P3, uid: B.uid, gid: B.gid }, Date.now()).prefixLen).toBe(8);
    await expectAsRules(entries, "replace");
    expect(await connectAs(sb, net.workloadNs, cg, A, P1, 2000), "uid 1 to P1").toBe(true);
    expect(await connectAs(sb, net.workloadNs, cg, B, P1, 600), "uid 65534 to P1").toBe(false);
  });

  it("UPSERT into the active generation replaces a prefix's scope set and deletes the unused one", async () => {
    const upsert = [at("127.0.0.1/32", [rule({ protocols: [TCP], ports: [{ from: P2, to: P2 }], users: [{ id: B.uid, name: "nobody" }] }, "allow", 104)])];
    const plan = registry.upsert(upsert, Date.now());
    expect(plan.scopeRemove.length).toBeGreaterThan(0);
    await filter.upsertCompiled(id, plan.entries, encodeScopeWire(plan.scopeWire));
    plan.commit();
    await filter.deleteCompiled(id, [], encodeScopeWire(plan.scopeRemove));
    plan.released();
    expect((await filter.exactTables(id)).scopeCount).toBe(registry.scopeEntries);
    const now = [upsert[0]!, at("127.0.0.0/8", [rule({ protocols: [TCP], ports: [{ from: P3, to: P3 }] }, "allow", 103)])];
    await expectAsRules(now, "upsert");
  });

  it("DELETE of the scoped prefix removes its scope entries; the /8 still decides", async () => {
    const plan = registry.delete([parseCidr("127.0.0.1/32")]);
    await filter.deleteCompiled(id, [parseCidr("127.0.0.1/32")], new Uint8Array());
    plan.commit();
    await filter.deleteCompiled(id, [], encodeScopeWire(plan.scopeRemove));
    plan.released();
    expect((await filter.exactTables(id)).scopeCount).toBe(registry.scopeEntries);
    await expectAsRules([at("127.0.0.0/8", [rule({ protocols: [TCP], ports: [{ from: P3, to: P3 }] }, "allow", 103)])], "delete");
  });
});
