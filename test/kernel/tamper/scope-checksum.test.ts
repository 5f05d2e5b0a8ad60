import { afterAll, beforeAll, describe, expect, it } from "vitest";
import path from "node:path";
import { parseCidr, type RuleScope } from "@netfence/proto/parse";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import type { FilterEntry, FilterPolicy, ScopedRuleEntry } from "../../../daemon/src/policy/compiled.js";
import { LAYOUT } from "../../../daemon/src/datapath/wire-format.js";
import { type FilterSandbox, closeFilterSandbox, filterSandbox, noDns } from "../../helpers/kernel-filter-fixture.js";
import { probe, sh, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";

// Session 21: the content checksum of VERIFY covers each address entry's scope-set id and scope
// kinds (bpf/loader/tamper.c add_entry, daemon/src/datapath/content-shadow.ts). An intruder with
// bpf map write points the /32 that carries a scoped deny (tcp/P2) at another scope set with
// `bpftool map update`: real connects show the deny gone (the /8's allow decides); VERIFY must
// report map-content, and a REPLACE of the same policy (the tamper watch's "rewrite") must put the
// deny back, VERIFY clean again. Before session 21 the record had neither field: VERIFY said nothing.
const PORT = 7451; // the sandbox's server-namespace echo server (unused here)
const P1 = 7452;
const P2 = 7453;
const TCP = 6;

const scope = (s: Partial<RuleScope>): RuleScope => ({ protocols: [], ports: [], users: [], groups: [], ...s });
const scoped = (port: number, action: "allow" | "deny", ruleId: number): ScopedRuleEntry => ({
  scope: scope({ protocols: [TCP], ports: [{ from: port, to: port }] }), allow: action === "allow", deny: action === "deny", ruleId, expiresAtMs: null,
});
const at = (cidr: string, allow: boolean, rules: ScopedRuleEntry[]): FilterEntry => ({ cidr: parseCidr(cidr), allow, deny: false, expiresAtMs: null, ruleId: 100, scoped: rules });

const run = (cmd: string, args: string[]) => sh(cmd, args, { timeoutMs: 10_000 });

describe("VERIFY's content checksum covers each address entry's scope id (real kernel, cgroup, 127.0.0.1)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  let cg: string;
  const id = `t-scsum-${process.pid}`;
  // 127.0.0.0/8 allowed; 127.0.0.1 denied on tcp/P2 (scope set 1); 127.0.0.2 has another set (allow tcp/P1).
  const policy: FilterPolicy = {
    mode: "allowlist", audit: false,
    entries: [at("127.0.0.0/8", true, []), at("127.0.0.1/32", false, [scoped(P2, "deny", 101)]), at("127.0.0.2/32", false, [scoped(P1, "allow", 102)])],
  };

  beforeAll(async () => {
    ctx = await filterSandbox("scsm", PORT);
    ({ sb, net, filter } = ctx);
    for (const p of [P1, P2]) await sb.echoServer(net.workloadNs, p);
    cg = await sb.cgroup();
    await filter.attach({ id, slot: 47, target: { kind: "cgroup", path: cg }, dns: noDns }, policy);
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  const reach = (port: number, timeoutMs = 2000) => probe(sb, net.workloadNs, "tcp", "127.0.0.1", { port, cgroup: cg, timeoutMs });
  const contentFindings = async () => (await filter.verify(new Map([[id, { content: true }]]))).get(id) ?? [];

  /** The exact-hash value of 127.0.0.1 in the active generation: [key bytes, value bytes]. */
  async function entryOf127(): Promise<[number[], Buffer]> {
    const st = JSON.parse((await run("bpftool", ["-j", "map", "lookup", "pinned", path.join(filter.pinRoot, id, "state"), "key", "0", "0", "0", "0"])).stdout) as { value: string[] };
    const gen = Buffer.from(st.value.map((h) => parseInt(h, 16))).readUInt32LE(LAYOUT.nf_state.active_gen) & 1;
    const key = [gen, 0, 0, 0, 127, 0, 0, 1];
    const v = JSON.parse((await run("bpftool", ["-j", "map", "lookup", "pinned", path.join(filter.pinRoot, id, "v4_exact"), "key", ...key.map(String)])).stdout) as { value: string[] };
    return [key, Buffer.from(v.value.map((h) => parseInt(h, 16)))];
  }

  it("untouched: VERIFY clean, the scoped deny holds", async () => {
    expect(await contentFindings()).toEqual([]);
    expect(await reach(P1)).toBe(true);
    expect(await reach(P2, 600)).toBe(false);
  });

  it("one entry's scope id rewritten with bpftool: the deny is gone, VERIFY reports map-content; a REPLACE repairs it", async () => {
    const [key, value] = await entryOf127();
    const scopeOff = 14; // nf_entry: expires_ns 0, rule_id 8, flags 12, prefixlen 13, scope 14 (u16)
    const own = value.readUInt16LE(scopeOff);
    expect(own).not.toBe(0);
    value.writeUInt16LE(own === 1 ? 2 : 1, scopeOff); // the other set (127.0.0.2's: allow tcp/P1)
    await run("bpftool", ["map", "update", "pinned", path.join(filter.pinRoot, id, "v4_exact"), "key", ...key.map(String), "value", ...[...value].map(String)]);
    expect(await reach(P2), "the tampered entry no longer denies tcp/P2: the /8 allows it").toBe(true);
    const found = await contentFindings();
    expect(found.map((f) => [f.kind, f.repair])).toEqual([["map-content", "rewrite"]]);
    // The repair the tamper watch makes for "rewrite": the same policy written again (atomic REPLACE).
    await filter.replacePolicy(id, policy);
    expect(await contentFindings()).toEqual([]);
    expect(await reach(P2, 600)).toBe(false);
    expect(await reach(P1)).toBe(true);
  });

  it("the scope kinds rewritten (the set no longer looked up for any owner): reported too", async () => {
    const [key, value] = await entryOf127();
    value[12] = value[12]! & 0x03; // flags: ALLOW|DENY only, no NF_ENTRY_SCOPE_* kinds
    await run("bpftool", ["map", "update", "pinned", path.join(filter.pinRoot, id, "v4_exact"), "key", ...key.map(String), "value", ...[...value].map(String)]);
    expect(await reach(P2)).toBe(true);
    expect((await contentFindings()).map((f) => f.kind)).toEqual(["map-content"]);
    await filter.replacePolicy(id, policy);
    expect(await contentFindings()).toEqual([]);
    expect(await reach(P2, 600)).toBe(false);
  });
});
