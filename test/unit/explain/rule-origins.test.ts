import { afterEach, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import { parseCidr } from "@netfence/proto/parse";
import { RuleOrigins, type RuleOrigin } from "../../../daemon/src/policy/rule-origins.js";
import { LearnedAddresses } from "../../../daemon/src/policy/learned-addresses.js";
import { AttachmentManager } from "../../../daemon/src/attachments/manager.js";
import type { AttachmentRecord } from "../../../daemon/src/attachments/attachment-record.js";
import { FakeBpffs, FakeFilter } from "../../../daemon/src/datapath/fake-filter.js";
import { MemoryStateStore } from "../../../daemon/src/store/state-store.js";
import { FakeDnsServers, RecordingPolicySource, fakeCgroupRoot, policy, silentLogger } from "../daemon/fakes.js";

// Rule provenance for explain: one record per policy-wide change and one per rule changed on its
// own since; persisted with the attachment and read back after a restart; and the answer behind
// a learned address.

const o = (what: string, atMs: number, commandId = ""): RuleOrigin => ({ source: "control-plane", commandId, what, atMs });
const cidr = (t: string) => ({ cidr: parseCidr(t), expiresAtMs: null });

describe("RuleOrigins", () => {
  it("rules point at the change that set them; a bulk update replaces everything but kept DNS rules", () => {
    const p = new RuleOrigins();
    expect(p.cidr("allow", "10.0.0.0/8")).toBeNull();
    p.noteInitial({ source: "default-policy", commandId: "", what: "default-policy", atMs: 1 });
    expect(p.cidr("allow", "10.0.0.0/8")).toMatchObject({ source: "default-policy" });
    p.noteCommand({ kind: "allow-cidr", rule: cidr("10.0.0.0/8") }, o("allow-cidr", 2, "c-2"));
    p.noteCommand({ kind: "allow-domain", rule: { domain: "x.com", includeSubdomains: false } }, o("allow-domain", 3, "c-3"));
    p.noteCommand({ kind: "set-mode", mode: "denylist", audit: null }, o("set-mode", 4, "c-4"));
    expect(p.cidr("allow", "10.0.0.0/8")).toMatchObject({ commandId: "c-2", atMs: 2 });
    expect(p.cidr("deny", "10.0.0.0/8")).toMatchObject({ source: "default-policy" });
    expect(p.mode()).toMatchObject({ commandId: "c-4" });
    // BulkUpdate without dns: CIDR rules and mode from it, DNS rules keep theirs.
    p.noteCommand({ kind: "bulk-update", mode: "allowlist", audit: false, allowCidrs: [], denyCidrs: [], dns: null }, o("bulk-update", 5, "c-5"));
    expect(p.cidr("allow", "10.0.0.0/8")).toMatchObject({ commandId: "c-5" });
    expect(p.mode()).toMatchObject({ commandId: "c-5" });
    expect(p.domain("allow", "x.com")).toMatchObject({ commandId: "c-3" });
    expect(p.domain("allow", "y.com")).toMatchObject({ source: "default-policy" });
    expect(p.dnsMode()).toMatchObject({ source: "default-policy" });
    // With dns: everything from it.
    p.noteCommand({ kind: "bulk-update", mode: "allowlist", audit: false, allowCidrs: [], denyCidrs: [], dns: { mode: "disabled", allowDomains: [], denyDomains: [], upstreams: [] } }, o("bulk-update", 6, "c-6"));
    expect(p.domain("allow", "x.com")).toMatchObject({ commandId: "c-6" });
    p.noteCommand({ kind: "deny-cidr", rule: cidr("10.1.0.0/16") }, o("deny-cidr", 7, "c-7"));
    p.noteCommand({ kind: "remove-cidr", cidr: parseCidr("10.1.0.0/16") }, o("remove-cidr", 8, "c-8"));
    expect(p.cidr("deny", "10.1.0.0/16")).toMatchObject({ commandId: "c-6" });
    expect(p.toStored()!.rules).toEqual([]);
  });

  it("the stored form round-trips through JSON; malformed parts are left out, never fatal", () => {
    const p = new RuleOrigins();
    expect(p.toStored()).toBeUndefined();
    p.noteInitial(o("subscribed-ack", 1));
    p.noteCommand({ kind: "allow-cidr", rule: cidr("192.0.2.0/24") }, o("allow-cidr", 2, "c-2"));
    const back = RuleOrigins.fromStored(JSON.parse(JSON.stringify(p.toStored())));
    expect(back.cidr("allow", "192.0.2.0/24")).toEqual(o("allow-cidr", 2, "c-2"));
    expect(back.mode()).toEqual(o("subscribed-ack", 1));
    const bad = RuleOrigins.fromStored({ base: { source: "evil", commandId: "", what: "", atMs: 1 }, rules: [["cidr:allow:1.0.0.0/8", { source: "local-api" }], "x", ["mode", o("set-mode", 3)]] });
    expect(bad.cidr("allow", "1.0.0.0/8")).toBeNull();
    expect(bad.mode()).toEqual(o("set-mode", 3));
    expect(RuleOrigins.fromStored("nonsense").mode()).toBeNull();
    expect(RuleOrigins.fromStored(undefined).mode()).toBeNull();
  });
});

describe("provenance survives a daemon restart (state store)", () => {
  const roots: string[] = [];
  const managers: AttachmentManager[] = [];
  afterEach(async () => {
    for (const m of managers.splice(0)) await m.stop();
    for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
  });
  const start = async (bpffs: FakeBpffs, store: MemoryStateStore, cgroupRoot: string, now: () => number) => {
    const manager = new AttachmentManager({
      filter: new FakeFilter(bpffs), policySource: new RecordingPolicySource(policy()), store, dnsServers: new FakeDnsServers(), logger: silentLogger,
      dns: { listenAddr: "127.0.0.1", portMin: 11000, portMax: 11010 }, cgroupRoot, now, gcIntervalMs: 0, fallbackDaemonId: "nfd-test",
    });
    managers.push(manager);
    await manager.start();
    return manager;
  };
  // The records are internal to the manager (the explainer reads them through the core in app.ts).
  const originsOf = (m: AttachmentManager, id: string) => (m as unknown as { core: { registry: { records: Map<string, AttachmentRecord> } } }).core.registry.records.get(id)!.state.origins;

  it("the command and the initial policy of each rule are read back after a restart", async () => {
    const bpffs = new FakeBpffs();
    const store = new MemoryStateStore();
    const cgroupRoot = fakeCgroupRoot("a");
    roots.push(cgroupRoot);
    let now = 1_700_000_000_000;
    const first = await start(bpffs, store, cgroupRoot, () => now);
    const a = await first.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    now += 5000;
    await first.applyCommand(a.id, { kind: "allow-cidr", rule: cidr("192.0.2.0/24") });
    await first.persist();
    await first.stop();
    managers.length = 0;
    const second = await start(bpffs, store, cgroupRoot, () => now);
    const origins = originsOf(second, a.id);
    expect(origins.cidr("allow", "192.0.2.0/24")).toEqual({ source: "local-api", commandId: "", what: "allow-cidr", atMs: 1_700_000_005_000 });
    expect(origins.mode()).toEqual({ source: "control-plane", commandId: "", what: "subscribed-ack", atMs: 1_700_000_000_000 });
  });
});

describe("learned records keep the answer behind them", () => {
  it("query time and answer TTL, kept when a later add has none, replaced by a newer answer; every name per address", () => {
    const l = new LearnedAddresses();
    const c = parseCidr("192.0.2.7");
    l.add("a.example", c, 10_000, undefined, { learnedAtMs: 1000, ttlSeconds: 9 });
    l.add("a.example", c, 5_000); // an older deadline (e.g. restored): the answer stays
    expect(l.forPrefix("192.0.2.7/32")).toEqual([expect.objectContaining({ name: "a.example", expiresAtMs: 10_000, learnedAtMs: 1000, ttlSeconds: 9 })]);
    l.add("a.example", c, 20_000, undefined, { learnedAtMs: 15_000, ttlSeconds: 5 });
    expect(l.forPrefix("192.0.2.7/32")[0]).toMatchObject({ learnedAtMs: 15_000, ttlSeconds: 5, expiresAtMs: 20_000 });
    l.add("b.example", c, 30_000, undefined, { learnedAtMs: 16_000, ttlSeconds: 14 });
    expect(l.namesOf("192.0.2.7/32").sort()).toEqual(["a.example", "b.example"]);
  });
});
