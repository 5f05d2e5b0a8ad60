import { afterEach, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import { AttachmentManager } from "../../../daemon/src/attachments/manager.js";
import { LearnedGuard, specialRange } from "../../../daemon/src/plan/learned-guard.js";
import type { LearnedRefusalReport } from "../../../daemon/src/attachments/learned-writer.js";
import { RuleIndex } from "../../../daemon/src/policy/rule-index.js";
import { indexRules } from "../../../daemon/src/policy/policy-state.js";
import { FakeFilter } from "../../../daemon/src/datapath/fake-filter.js";
import { MemoryStateStore } from "../../../daemon/src/store/state-store.js";
import { formatCidr, parseCidr } from "@netfence/proto/parse";
import type { AttachmentPolicy, DnsPolicy } from "../../../daemon/src/policy/policy.js";
import { FakeDnsServers, RecordingPolicySource, learn as learnVia, fakeCgroupRoot, policy, silentLogger } from "./fakes.js";

// The DNS rebinding guard (issue 10 item 4) where learned entries are planned: what a DNS answer
// may open, what a later policy change takes back, and what is reported. The kernel side (real
// packets) is test/security/dns-rebinding.test.ts.

const rule = (c: string, expiresAtMs: number | null = null) => ({ cidr: parseCidr(c), expiresAtMs });
const anyName: DnsPolicy = { mode: "denylist", allowDomains: [], denyDomains: [], upstreams: [] };
const HOST = "10.99.0.1";

const roots: string[] = [];
const managers: AttachmentManager[] = [];

afterEach(async () => {
  for (const m of managers.splice(0)) await m.stop();
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

async function rig(pol: AttachmentPolicy, opts: { protectedDeny?: string[]; quota?: number; hostAddresses?: string[] } = {}) {
  const cgroupRoot = fakeCgroupRoot("a");
  roots.push(cgroupRoot);
  const clock = { now: 1_700_000_000_000 };
  const filter = new FakeFilter();
  filter.now = () => clock.now;
  const host = { keys: new Set((opts.hostAddresses ?? [HOST]).map((a) => formatCidr(parseCidr(a)))), version: 1 };
  const reports: LearnedRefusalReport[] = [];
  const manager = new AttachmentManager({
    filter,
    policySource: new RecordingPolicySource(pol),
    store: new MemoryStateStore(),
    dnsServers: new FakeDnsServers(),
    logger: silentLogger,
    dns: {
      listenAddr: "127.0.0.1", portMin: 11000, portMax: 11010,
      quotas: { qps: 1000, inflight: 128, learned: opts.quota ?? 16384, answerRecords: 32, tcpConnections: 32, tcpPerSource: 8 },
    },
    cgroupRoot,
    now: () => clock.now,
    gcIntervalMs: 0,
    integrityIntervalMs: 0,
    fallbackDaemonId: "nfd-test",
    learnedGuard: new LearnedGuard({ protectedDeny: (opts.protectedDeny ?? []).map((c) => parseCidr(c)), hostAddresses: () => host.keys }),
    hostAddressesVersion: () => host.version,
    onLearnedRefused: (r) => reports.push(r),
  });
  managers.push(manager);
  await manager.start();
  const v = await manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
  const learn = (name: string, ...addresses: string[]) =>
    learnVia(manager, v.id, name, addresses, 600);
  return { manager, filter, id: v.id, clock, host, reports, learn };
}

describe("special ranges", () => {
  it("names the reason of every range the guard closes", () => {
    const reason = (a: string) => specialRange(parseCidr(a));
    expect([
      "169.254.169.254", "fd00:ec2::254", "127.0.0.1", "127.255.0.9", "::1", "0.0.0.0", "0.1.2.3", "::", "169.254.10.1",
      "fe80::1", "febf::1", "::ffff:10.0.0.1", "224.0.0.251", "239.1.1.1", "ff02::1", "ff05::2", "255.255.255.255",
    ].map(reason)).toEqual([
      "metadata", "metadata", "loopback", "loopback", "loopback", "unspecified", "unspecified", "unspecified", "link-local",
      "link-local", "link-local", "v4-mapped", "multicast", "multicast", "multicast", "multicast", "broadcast",
    ]);
    expect(["8.8.8.8", "10.0.0.1", "2001:db8::1", "fec0::1", "::2", "::ffff:0:1:0", "240.0.0.1"].map(reason)).toEqual([null, null, null, null, null, null, null]);
  });

  it("the longest matching CIDR rule decides before the special ranges (as the kernel's LPM would)", () => {
    const guard = new LearnedGuard({ protectedDeny: [parseCidr("192.0.2.0/24")], hostAddresses: () => new Set() });
    const rules = new RuleIndex(indexRules(
      [rule("169.254.169.254/32"), rule("10.0.0.0/8"), rule("192.0.2.0/24")],
      [rule("10.1.0.0/16"), rule("203.0.113.0/24")],
    ));
    const check = (a: string) => guard.check(parseCidr(a), formatCidr(parseCidr(a)), rules, 0);
    expect(check("169.254.169.254")).toBeNull(); // explicitly allowed by a CIDR
    expect(check("169.254.169.253")).toBe("link-local");
    expect(check("10.2.3.4")).toBeNull(); // allow /8 is the longest match
    expect(check("10.1.3.4")).toBe("deny-cidr"); // deny /16 is longer than allow /8
    expect(check("203.0.113.9")).toBe("deny-cidr");
    expect(check("192.0.2.7")).toBe("protected-deny"); // never overridable, not even by an allow
    const override = { key: "10.1.0.0/16", rules: null };
    expect(guard.check(parseCidr("10.1.3.4"), "10.1.3.4/32", rules, 0, override)).toBeNull(); // seen as if the deny were removed
  });
});

describe("learned addresses under the guard (manager + fake kernel)", () => {
  it("a DNS answer never opens a denied CIDR, the metadata address, loopback, the host's own address or protected-deny; the rest is opened", async () => {
    const r = await rig(policy({ mode: "denylist", denyCidrs: [rule("198.51.100.0/24")], dns: anyName }), { protectedDeny: ["192.0.2.0/24"] });
    const outcome = await r.learn("evil.test", "198.51.100.7", "169.254.169.254", "127.0.0.1", HOST, "192.0.2.5", "fe80::1", "203.0.113.10");
    expect(outcome.refused.map((x) => [x.address, x.reason])).toEqual([
      ["198.51.100.7", "deny-cidr"], ["169.254.169.254", "metadata"], ["127.0.0.1", "loopback"], [HOST, "host-address"],
      ["192.0.2.5", "protected-deny"], ["fe80::1", "link-local"],
    ]);
    expect(r.filter.verdict(r.id, "198.51.100.7")).toBe("block");
    expect([...r.filter.entries(r.id).keys()].sort()).toEqual(["198.51.100.0/24", "203.0.113.10/32"]);
    expect(r.reports.map((x) => [x.name, x.address, x.reason, x.when])).toContainEqual(["evil.test", "169.254.169.254", "metadata", "answer"]);
    expect(r.reports).toHaveLength(6);
  });

  it("an explicit CIDR allow lets a special address be learned (but protected-deny never)", async () => {
    const r = await rig(policy({ allowCidrs: [rule("169.254.169.254/32"), rule("192.0.2.0/24")], dns: anyName }), { protectedDeny: ["192.0.2.0/24"] });
    const outcome = await r.learn("meta.internal", "169.254.169.254", "192.0.2.9");
    expect(outcome.refused.map((x) => x.reason)).toEqual(["protected-deny"]);
  });

  it("a deny CIDR added later removes the learned /32s it covers, atomically, and reports them", async () => {
    const r = await rig(policy({ mode: "allowlist", dns: anyName }));
    await r.learn("a.test", "198.51.100.7", "198.51.100.8");
    await r.learn("b.test", "198.51.100.7");
    await r.learn("c.test", "203.0.113.1");
    expect(r.filter.verdict(r.id, "198.51.100.7")).toBe("allow");
    r.filter.calls.length = 0;
    await r.manager.applyCommand(r.id, { kind: "deny-cidr", rule: rule("198.51.100.0/24") });
    expect(r.filter.calls.map((c) => c.method)).toEqual(["replacePolicy"]);
    expect(r.filter.verdict(r.id, "198.51.100.7")).toBe("block");
    expect(r.filter.verdict(r.id, "198.51.100.8")).toBe("block");
    expect(r.filter.verdict(r.id, "203.0.113.1")).toBe("allow");
    expect(r.reports.filter((x) => x.when === "recheck").map((x) => [x.name, x.address, x.reason]).sort()).toEqual([
      ["a.test", "198.51.100.7", "deny-cidr"], ["a.test", "198.51.100.8", "deny-cidr"], ["b.test", "198.51.100.7", "deny-cidr"],
    ]);
    // A deny of one host only touches that host; nothing else is rewritten.
    r.filter.calls.length = 0;
    await r.manager.applyCommand(r.id, { kind: "deny-cidr", rule: rule("203.0.113.1/32") });
    expect(r.filter.calls.map((c) => c.method)).toEqual(["replacePolicy"]);
    expect(r.filter.verdict(r.id, "203.0.113.1")).toBe("block");
    // Removing the deny does not bring the learned address back (it was forgotten; a new answer would).
    await r.manager.applyCommand(r.id, { kind: "remove-cidr", cidr: parseCidr("203.0.113.1/32") });
    expect(r.filter.verdict(r.id, "203.0.113.1")).toBe("block");
    expect((await r.learn("c.test", "203.0.113.1")).refused).toEqual([]);
    expect(r.filter.verdict(r.id, "203.0.113.1")).toBe("allow");
  });

  it("a BulkUpdate with a new deny removes covered learned addresses in the same replace", async () => {
    const r = await rig(policy({ mode: "allowlist", dns: anyName }));
    await r.learn("a.test", "198.51.100.7", "203.0.113.1");
    r.filter.calls.length = 0;
    await r.manager.applyCommand(r.id, { kind: "bulk-update", mode: "allowlist", audit: false, allowCidrs: [], denyCidrs: [rule("198.51.100.0/25")], dns: null });
    expect(r.filter.calls.map((c) => c.method)).toEqual(["replacePolicy"]);
    expect(r.filter.verdict(r.id, "198.51.100.7")).toBe("block");
    expect(r.filter.verdict(r.id, "203.0.113.1")).toBe("allow");
    expect(r.reports.map((x) => [x.address, x.reason, x.when])).toEqual([["198.51.100.7", "deny-cidr", "recheck"]]);
  });

  it("removing (or the expiry of) the explicit allow that let a metadata address in takes the learned address back", async () => {
    const r = await rig(policy({ mode: "allowlist", allowCidrs: [rule("169.254.169.254/32"), rule("127.0.0.0/8", 1_700_000_010_000)], dns: anyName }));
    expect((await r.learn("meta.internal", "169.254.169.254")).refused).toEqual([]);
    expect((await r.learn("local.internal", "127.0.0.5")).refused).toEqual([]);
    await r.manager.applyCommand(r.id, { kind: "remove-cidr", cidr: parseCidr("169.254.169.254/32") });
    expect(r.filter.verdict(r.id, "169.254.169.254")).toBe("block");
    expect(r.filter.entries(r.id).has("169.254.169.254/32")).toBe(false);
    // The /8 allow expires: the learned loopback address goes with it at the next collection.
    r.clock.now += 11_000;
    await r.manager.collectExpired();
    expect(r.filter.entries(r.id).has("127.0.0.5/32")).toBe(false);
    expect(r.reports.map((x) => [x.address, x.reason])).toEqual([["169.254.169.254", "metadata"], ["127.0.0.5", "loopback"]]);
  });

  it("when the host gains an address, a learned address that is now the host's own is removed", async () => {
    const r = await rig(policy({ mode: "allowlist", dns: anyName }));
    await r.learn("x.test", "203.0.113.50");
    expect(r.filter.verdict(r.id, "203.0.113.50")).toBe("allow");
    r.host.keys = new Set([...r.host.keys, "203.0.113.50/32"]);
    r.host.version++;
    const removed = await (r.manager as unknown as { core: { learned: { recheckAll(): Promise<number> } } }).core.learned.recheckAll();
    expect(removed).toBe(1);
    expect(r.filter.verdict(r.id, "203.0.113.50")).toBe("block");
    expect(r.reports.at(-1)).toMatchObject({ address: "203.0.113.50", reason: "host-address", when: "recheck" });
  });

  it("learned-address quota: new addresses beyond it are refused ('quota'); known ones cost nothing; expired ones are collected first", async () => {
    const r = await rig(policy({ mode: "allowlist", dns: anyName }), { quota: 3 });
    await learnVia(r.manager, r.id, "a.test", ["203.0.113.1"], 30);
    expect((await r.learn("b.test", "203.0.113.2", "203.0.113.3")).refused).toEqual([]);
    const over = await r.learn("c.test", "203.0.113.4", "203.0.113.2");
    expect(over.refused).toEqual([{ name: "c.test", address: "203.0.113.4", reason: "quota" }]);
    expect(r.filter.verdict(r.id, "203.0.113.4")).toBe("block");
    expect(r.filter.verdict(r.id, "203.0.113.2")).toBe("allow");
    // a.test's address expires (TTL 30 s: the manager takes the TTL it is given; the server applies dns.min_ttl).
    r.clock.now += 31_000;
    expect((await r.learn("c.test", "203.0.113.4")).refused).toEqual([]);
    expect(r.filter.verdict(r.id, "203.0.113.4")).toBe("allow");
    expect(r.filter.entries(r.id).has("203.0.113.1/32")).toBe(false);
    expect(r.reports.map((x) => x.reason)).toEqual(["quota"]);
  });

  it("at restart, stored learned addresses meet today's guard (a protected_deny added meanwhile)", async () => {
    const store = new MemoryStateStore();
    const cgroupRoot = fakeCgroupRoot("a");
    roots.push(cgroupRoot);
    const filter = new FakeFilter();
    const make = (protectedDeny: string[], reports: LearnedRefusalReport[]) => {
      const m = new AttachmentManager({
        filter, policySource: new RecordingPolicySource(policy({ mode: "allowlist", dns: anyName })), store, dnsServers: new FakeDnsServers(),
        logger: silentLogger, dns: { listenAddr: "127.0.0.1", portMin: 11000, portMax: 11010 }, cgroupRoot,
        gcIntervalMs: 0, integrityIntervalMs: 0, fallbackDaemonId: "nfd-test",
        learnedGuard: new LearnedGuard({ protectedDeny: protectedDeny.map((c) => parseCidr(c)), hostAddresses: () => new Set() }),
        onLearnedRefused: (r) => reports.push(r),
      });
      managers.push(m);
      return m;
    };
    const first = make([], []);
    await first.start();
    const v = await first.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    await learnVia(first, v.id, "x.test", ["192.0.2.10", "198.51.100.10"], 600);
    await first.stop();
    managers.splice(managers.indexOf(first), 1);
    const reports: LearnedRefusalReport[] = [];
    const second = make(["192.0.2.0/24"], reports);
    await second.start();
    expect(filter.entries(v.id).has("192.0.2.10/32")).toBe(false);
    expect(filter.entries(v.id).has("198.51.100.10/32")).toBe(true);
    expect(reports.map((x) => [x.address, x.reason])).toEqual([["192.0.2.10", "protected-deny"]]);
  });
});
