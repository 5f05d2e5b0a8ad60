import { afterEach, describe, expect, it } from "vitest";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { AttachmentManager, type ManagerOptions } from "../../../daemon/src/attachments/manager.js";
import { FakeBpffs, FakeFilter } from "../../../daemon/src/datapath/fake-filter.js";
import { MemoryStateStore, type StateStore } from "../../../daemon/src/store/state-store.js";
import { NetfenceError } from "@netfence/proto/errors";
import { formatCidr, parseCidr } from "@netfence/proto/parse";
import type { AttachmentPolicy } from "../../../daemon/src/policy/policy.js";
import { FakeDnsServers, RecordingPolicySource, learn, fakeCgroupRoot, fakeNetClass, policy, silentLogger } from "./fakes.js";

const rule = (c: string, expiresAtMs: number | null = null) => ({ cidr: parseCidr(c), expiresAtMs });

interface Rig {
  manager: AttachmentManager;
  filter: FakeFilter;
  source: RecordingPolicySource;
  dns: FakeDnsServers;
  store: StateStore;
  cgroupRoot: string;
  clock: { now: number };
}

const roots: string[] = [];
const managers: AttachmentManager[] = [];

async function rig(
  pol: AttachmentPolicy = policy(),
  over: Partial<ManagerOptions> & { bpffs?: FakeBpffs; store?: StateStore; cgroupRoot?: string; clock?: { now: number } } = {},
): Promise<Rig> {
  const cgroupRoot = over.cgroupRoot ?? fakeCgroupRoot("a", "b", "c", "nested/d");
  roots.push(cgroupRoot);
  const clock = over.clock ?? { now: 1_700_000_000_000 };
  const filter = new FakeFilter(over.bpffs);
  filter.now = () => clock.now;
  const source = new RecordingPolicySource(pol);
  const dns = new FakeDnsServers();
  const store = over.store ?? new MemoryStateStore();
  const manager = new AttachmentManager({
    filter,
    policySource: source,
    store,
    dnsServers: dns,
    logger: silentLogger,
    dns: { listenAddr: "127.0.0.1", portMin: 11000, portMax: 11010 },
    cgroupRoot,
    now: () => clock.now,
    gcIntervalMs: 0,
    fallbackDaemonId: "nfd-test",
    ...over,
  });
  managers.push(manager);
  await manager.start();
  return { manager, filter, source, dns, store, cgroupRoot, clock };
}

afterEach(async () => {
  for (const m of managers.splice(0)) await m.stop();
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "OK";
  } catch (err) {
    return (err as NetfenceError).code ?? String(err);
  }
}

describe("AttachmentManager attach/detach", () => {
  it("attaches an interface with the initial policy enforced, a DNS server and a unique port", async () => {
    // "lo" exists everywhere; a fake /sys/class/net makes it an Ethernet-type device for this test.
    const netClassDir = fakeNetClass({ lo: 1 });
    roots.push(netClassDir);
    const r = await rig(policy({ allowCidrs: [rule("10.0.0.0/8")] }), { netClassDir });
    const v = await r.manager.attach({ target: { kind: "interface", name: "lo", direction: "ingress" }, metadata: { vm: "1" } });
    expect(v.id).toMatch(/^nf-[0-9a-f]{12}$/);
    expect(v.dnsAddress).toBe("127.0.0.1:11000");
    expect(v.type).toBe("interface");
    expect(v.mode).toBe("allowlist");
    expect(r.filter.verdict(v.id, "10.1.2.3")).toBe("allow");
    expect(r.filter.verdict(v.id, "11.1.2.3")).toBe("block");
    expect(r.filter.verdict(v.id, "127.0.0.1")).toBe("block"); // loopback is closed unless allowed explicitly
    expect(r.filter.verdict(v.id, "127.0.0.1", { protocol: 17, port: 11000 })).toBe("allow"); // its own DNS server
    expect(r.dns.running.get(v.id)?.listen).toEqual({ host: "127.0.0.1", port: 11000 });
    expect(r.source.subscribed[0]?.metadata).toEqual({ vm: "1" });
    expect(r.manager.list().map((a) => a.id)).toEqual([v.id]);
  });

  it("refuses an interface whose link type the TC program cannot parse, naming the type and what is supported", async () => {
    const netClassDir = fakeNetClass({ lo: 772 });
    roots.push(netClassDir);
    const r = await rig(policy(), { netClassDir });
    const err = await r.manager.attach({ target: { kind: "interface", name: "lo", direction: "ingress" }, metadata: {} }).catch((e: unknown) => e as NetfenceError);
    expect(err).toMatchObject({ code: "INVALID_ARGUMENT" });
    expect((err as NetfenceError).message).toMatch(/link type 772 \(loopback\).*ARPHRD_ETHER.*tun/);
    expect(r.filter.calls).toEqual([]);
    expect(r.source.subscribed).toEqual([]);
  });

  it("refuses a second attach of the same target with ALREADY_EXISTS", async () => {
    const r = await rig();
    await r.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    expect(await codeOf(r.manager.attach({ target: { kind: "cgroup", path: path.join(r.cgroupRoot, "a") }, metadata: {} }))).toBe("ALREADY_EXISTS");
    expect(await codeOf(r.manager.attach({ target: { kind: "cgroup", path: "nested/../a" }, metadata: {} }))).toBe("ALREADY_EXISTS");
    expect(r.manager.size).toBe(1);
  });

  it("validates cgroup and interface targets", async () => {
    const r = await rig();
    const cg = (p: string) => codeOf(r.manager.attach({ target: { kind: "cgroup", path: p }, metadata: {} }));
    expect(await cg("/etc")).toBe("INVALID_ARGUMENT");
    expect(await cg("../..")).toBe("INVALID_ARGUMENT");
    expect(await cg("a/../../..")).toBe("INVALID_ARGUMENT");
    expect(await cg("not-a-cgroup")).toBe("INVALID_ARGUMENT");
    expect(await cg("")).toBe("INVALID_ARGUMENT");
    expect(await cg(r.cgroupRoot)).toBe("INVALID_ARGUMENT");
    expect(await cg("missing")).toBe("NOT_FOUND");
    expect(await cg("nested/d")).toBe("OK");
    const itf = (n: string) => codeOf(r.manager.attach({ target: { kind: "interface", name: n, direction: "ingress" }, metadata: {} }));
    expect(await itf("nf-no-such-if")).toBe("NOT_FOUND");
    expect(await itf("../etc")).toBe("INVALID_ARGUMENT");
    expect(await itf("a-name-longer-than-15")).toBe("INVALID_ARGUMENT");
    expect(r.manager.size).toBe(1);
    expect(await r.filter.listPinned()).toHaveLength(1);
  });

  it("hands out distinct ports and reports exhaustion clearly", async () => {
    const r = await rig(policy(), { dns: { listenAddr: "127.0.0.1", portMin: 11000, portMax: 11001 } });
    const a = await r.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    const b = await r.manager.attach({ target: { kind: "cgroup", path: "b" }, metadata: {} });
    expect(new Set([a.dnsAddress, b.dnsAddress]).size).toBe(2);
    const err = await r.manager.attach({ target: { kind: "cgroup", path: "c" }, metadata: {} }).catch((e: unknown) => e as NetfenceError);
    expect(err).toMatchObject({ code: "RESOURCE_EXHAUSTED" });
    expect((err as Error).message).toContain("11000-11001");
    await r.manager.detach(a.id);
    const c = await r.manager.attach({ target: { kind: "cgroup", path: "c" }, metadata: {} });
    expect(c.dnsAddress).toBe(a.dnsAddress);
  });

  it("rolls everything back when the kernel attach, the DNS server or the policy source fails", async () => {
    const r = await rig();
    r.filter.failNext("attach");
    expect(await codeOf(r.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} }))).toBe("INTERNAL");
    expect(r.source.unsubscribedCalls).toEqual([{ id: r.source.subscribed[0]!.id, reason: "error" }]);

    r.dns.busyPorts.add(11000);
    expect(await codeOf(r.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} }))).toBe("UNAVAILABLE");
    r.dns.busyPorts.clear();

    r.source.fail = new NetfenceError("DEADLINE_EXCEEDED", "no SubscribedAck within 5s");
    expect(await codeOf(r.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} }))).toBe("DEADLINE_EXCEEDED");
    r.source.fail = null;

    expect(r.manager.size).toBe(0);
    expect(await r.filter.listPinned()).toEqual([]);
    expect(r.dns.running.size).toBe(0);
    // The same target (and port) can be attached afterwards.
    const ok = await r.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    expect(ok.dnsAddress).toBe("127.0.0.1:11000");
  });

  it("rolls back an attach whose state cannot be saved", async () => {
    const store = new MemoryStateStore();
    const r = await rig(policy(), { store });
    store.save = async () => {
      throw new NetfenceError("INTERNAL", "disk full");
    };
    expect(await codeOf(r.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} }))).toBe("INTERNAL");
    expect(r.manager.size).toBe(0);
    expect(await r.filter.listPinned()).toEqual([]);
    expect(r.dns.running.size).toBe(0);
    expect(r.source.unsubscribedCalls.map((u) => u.reason)).toEqual(["error"]);
  });

  it("detach removes pins, stops DNS, reports DETACHED; unknown id → NOT_FOUND", async () => {
    const r = await rig();
    const v = await r.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    await r.manager.detach(v.id);
    expect(await r.filter.listPinned()).toEqual([]);
    expect(r.dns.running.size).toBe(0);
    expect(r.source.unsubscribedCalls).toEqual([{ id: v.id, reason: "detached" }]);
    expect(await codeOf(r.manager.detach(v.id))).toBe("NOT_FOUND");
    expect(await codeOf(r.manager.detach("nf-000000000000"))).toBe("NOT_FOUND");
  });

  it("reads counters as zero for an attachment whose kernel state vanished, without failing the others", async () => {
    const r = await rig();
    const a = await r.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    const b = await r.manager.attach({ target: { kind: "cgroup", path: "b" }, metadata: {} });
    r.filter.sendPacket(b.id, "192.0.2.1");
    const original = r.filter.counters.bind(r.filter);
    r.filter.counters = async (ids) => {
      if (ids.includes(a.id)) throw new NetfenceError("NOT_FOUND", `COUNTERS ${a.id}: not loaded`);
      return original(ids);
    };
    const stats = await r.manager.statsFor([a.id, b.id, "nf-unknown"]);
    expect(stats.map((s) => [s.id, s.packetsBlocked])).toEqual([[a.id, 0n], [b.id, 1n], ["nf-unknown", 0n]]);
  });

  it("restores an attachment whose pins were removed by someone else, with its current policy", async () => {
    const r = await rig(policy({ allowCidrs: [rule("10.0.0.0/8")] }));
    const a = await r.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    const b = await r.manager.attach({ target: { kind: "cgroup", path: "b" }, metadata: {} });
    await r.manager.applyCommand(a.id, { kind: "deny-cidr", rule: rule("10.9.0.0/16") });
    expect(await r.manager.checkIntegrity()).toEqual([]);
    const slot = r.filter.bpffs.pinned.get(a.id)!.spec.slot;
    r.filter.bpffs.pinned.delete(a.id); // "rm -rf <pin_root>/<id>"
    expect(r.filter.verdict(a.id, "192.0.2.1")).toBe("allow"); // nothing enforces any more
    expect(await r.manager.checkIntegrity()).toEqual([a.id]);
    expect(r.filter.bpffs.pinned.get(a.id)!.spec).toMatchObject({ id: a.id, slot, dns: { port: 11000 } });
    expect(r.filter.verdict(a.id, "192.0.2.1")).toBe("block");
    expect(r.filter.verdict(a.id, "10.1.0.1")).toBe("allow");
    expect(r.filter.verdict(a.id, "10.9.0.1")).toBe("block");
    expect(r.manager.list().map((v) => v.id).sort()).toEqual([a.id, b.id].sort());
    expect(r.manager.integrityRestores).toBe(1);
    expect(await r.manager.checkIntegrity()).toEqual([]);
  });

  it("targetGone detaches and reports REMOVED", async () => {
    const r = await rig();
    const v = await r.manager.attach({ target: { kind: "cgroup", path: "b" }, metadata: {} });
    await r.manager.targetGone(v.id);
    expect(r.manager.size).toBe(0);
    expect(r.source.unsubscribedCalls).toEqual([{ id: v.id, reason: "removed" }]);
  });

  it("serialises concurrent attaches of distinct targets", async () => {
    const r = await rig();
    r.source.delayMs = 5;
    const views = await Promise.all(["a", "b", "c", "nested/d"].map((p) => r.manager.attach({ target: { kind: "cgroup", path: p }, metadata: {} })));
    expect(new Set(views.map((v) => v.dnsAddress)).size).toBe(4);
    expect(new Set(views.map((v) => v.id)).size).toBe(4);
    const slots = [...r.filter.bpffs.pinned.values()].map((p) => p.spec.slot);
    expect(new Set(slots).size).toBe(4);
  });
});

describe("AttachmentManager commands", () => {
  async function attached(pol: AttachmentPolicy = policy()) {
    const r = await rig(pol);
    const v = await r.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    r.filter.calls.length = 0;
    return { ...r, id: v.id };
  }

  it("single CIDR commands use entry updates; a failed one changes nothing", async () => {
    const r = await attached();
    await r.manager.applyCommand(r.id, { kind: "allow-cidr", rule: rule("192.0.2.0/24") });
    expect(r.filter.calls.map((c) => c.method)).toEqual(["upsertEntries"]);
    expect(r.filter.verdict(r.id, "192.0.2.9")).toBe("allow");
    await r.manager.applyCommand(r.id, { kind: "deny-cidr", rule: rule("192.0.2.9") });
    expect(r.filter.verdict(r.id, "192.0.2.9")).toBe("block");
    expect(r.filter.verdict(r.id, "192.0.2.8")).toBe("allow");
    await r.manager.applyCommand(r.id, { kind: "remove-cidr", cidr: parseCidr("192.0.2.9") });
    expect(r.filter.calls.at(-1)?.method).toBe("deleteEntries");
    expect(r.filter.verdict(r.id, "192.0.2.9")).toBe("allow");

    r.filter.failNext("upsertEntries");
    expect(await codeOf(r.manager.applyCommand(r.id, { kind: "allow-cidr", rule: rule("198.51.100.0/24") }))).toBe("INTERNAL");
    expect(r.filter.verdict(r.id, "198.51.100.1")).toBe("block");
    expect(r.manager.policyOf(r.id).allowCidrs.map((c) => formatCidr(c.cidr))).toEqual(["192.0.2.0/24"]);
    expect(await codeOf(r.manager.applyCommand("nf-unknown", { kind: "set-mode", mode: "block-all", audit: null }))).toBe("NOT_FOUND");
  });

  it("a command that reached the kernel is not reported failed when the state write fails; the next write carries it", async () => {
    const store = new MemoryStateStore();
    const r = await rig(policy(), { store });
    const v = await r.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    const save = store.save.bind(store);
    store.save = async () => {
      throw new NetfenceError("INTERNAL", "disk full");
    };
    await r.manager.applyCommand(v.id, { kind: "allow-cidr", rule: rule("192.0.2.0/24") });
    expect(r.filter.verdict(v.id, "192.0.2.1")).toBe("allow");
    store.save = save;
    await r.manager.persist();
    expect((await store.load())!.attachments[0]!.policy.allowCidrs).toEqual([{ cidr: "192.0.2.0/24", expiresAtMs: null }]);
  });

  it("set-mode switches the kernel mode", async () => {
    const r = await attached(policy({ allowCidrs: [rule("10.0.0.0/8")] }));
    await r.manager.applyCommand(r.id, { kind: "set-mode", mode: "block-all", audit: null });
    expect(r.filter.verdict(r.id, "10.0.0.1")).toBe("block");
    await r.manager.applyCommand(r.id, { kind: "set-mode", mode: "denylist", audit: null });
    expect(r.filter.verdict(r.id, "11.0.0.1")).toBe("allow");
    expect(r.manager.get(r.id).mode).toBe("denylist");
  });

  it("audit mode: SetMode without it keeps it, with it sets it; a BulkUpdate restates it (false when absent)", async () => {
    const r = await attached(policy({ allowCidrs: [rule("10.0.0.0/8")] }));
    const kernelAudit = (): boolean | undefined => r.filter.bpffs.pinned.get(r.id)?.audit;
    await r.manager.applyCommand(r.id, { kind: "set-mode", mode: "allowlist", audit: true });
    expect(r.filter.calls.map((c) => c.method)).toEqual(["setMode"]);
    expect([kernelAudit(), r.manager.get(r.id).audit, r.manager.policyOf(r.id).audit]).toEqual([true, true, true]);
    await r.manager.applyCommand(r.id, { kind: "set-mode", mode: "block-all", audit: null }); // a Go-original SetMode
    expect([kernelAudit(), r.manager.get(r.id).mode]).toEqual([true, "block-all"]);
    await r.manager.applyCommand(r.id, { kind: "set-mode", mode: "block-all", audit: null }); // nothing changes
    expect(r.filter.calls.map((c) => c.method)).toEqual(["setMode", "setMode"]);
    const bulk = { kind: "bulk-update" as const, mode: "allowlist" as const, audit: true, allowCidrs: [rule("10.0.0.0/8")], denyCidrs: [], dns: null };
    await r.manager.applyCommand(r.id, bulk);
    expect(kernelAudit()).toBe(true);
    await r.manager.applyCommand(r.id, { ...bulk, audit: false }); // only the audit flag differs: still written
    expect(r.filter.calls.map((c) => c.method)).toEqual(["setMode", "setMode", "replacePolicy", "replacePolicy"]);
    expect([kernelAudit(), r.manager.get(r.id).audit]).toEqual([false, false]);
    expect(r.manager.snapshot().attachments[0]!.policy.audit).toBe(false);
    await r.manager.applyCommand(r.id, { kind: "set-mode", mode: "allowlist", audit: true });
    expect(r.manager.snapshot().attachments[0]!.policy.audit).toBe(true); // persisted: survives a restart
  });

  it("bulk-update replaces the whole policy atomically", async () => {
    const r = await attached(policy({ allowCidrs: [rule("10.0.0.0/8"), rule("172.16.0.0/12")] }));
    await r.manager.applyCommand(r.id, {
      kind: "bulk-update",
      mode: "allowlist",
      audit: false,
      allowCidrs: [rule("10.0.0.0/8"), rule("192.168.0.0/16")],
      denyCidrs: [rule("10.9.0.0/16")],
      dns: null,
    });
    expect(r.filter.calls.map((c) => c.method)).toEqual(["replacePolicy"]);
    expect(r.filter.verdict(r.id, "10.1.0.1")).toBe("allow");
    expect(r.filter.verdict(r.id, "10.9.0.1")).toBe("block");
    expect(r.filter.verdict(r.id, "172.16.0.1")).toBe("block");
    expect(r.filter.verdict(r.id, "192.168.3.3")).toBe("allow");
    r.filter.failNext("replacePolicy");
    const before = r.filter.entries(r.id);
    expect(await codeOf(r.manager.applyCommand(r.id, { kind: "bulk-update", mode: "block-all", audit: false, allowCidrs: [], denyCidrs: [], dns: null }))).toBe("INTERNAL");
    expect(r.filter.entries(r.id)).toEqual(before);
    expect(r.manager.get(r.id).mode).toBe("allowlist");
  });

  it("a bulk-update restating the current policy writes nothing (kernel or store); a changed mode, rule or TTL still replaces", async () => {
    const r = await attached(policy({ allowCidrs: [rule("10.0.0.0/8"), rule("172.16.0.0/12")], denyCidrs: [rule("10.9.0.0/16")] }));
    const same = { kind: "bulk-update" as const, mode: "allowlist" as const, audit: false, allowCidrs: [rule("172.16.0.0/12"), rule("10.0.0.0/8")], denyCidrs: [rule("10.9.0.0/16")], dns: null };
    await r.manager.applyCommand(r.id, same);
    const stored = r.manager.snapshot().attachments[0];
    await r.manager.applyCommand(r.id, same);
    await r.manager.applyCommand(r.id, { ...same, dns: r.manager.policyOf(r.id).dns });
    expect(r.filter.calls.map((c) => c.method)).toEqual([]);
    expect(r.manager.snapshot().attachments[0]).toBe(stored); // the same stored object: the journal writes nothing
    await r.manager.applyCommand(r.id, { ...same, mode: "denylist" });
    await r.manager.applyCommand(r.id, { ...same, mode: "denylist", denyCidrs: [] });
    await r.manager.applyCommand(r.id, { ...same, mode: "denylist", denyCidrs: [{ cidr: parseCidr("10.9.0.0/16"), expiresAtMs: r.clock.now + 60_000 }] });
    expect(r.filter.calls.map((c) => c.method)).toEqual(["replacePolicy", "replacePolicy", "replacePolicy"]);
    expect(r.filter.verdict(r.id, "10.9.0.1")).toBe("block");
    expect(r.manager.snapshot().attachments[0]).not.toBe(stored);
  });

  it("keeps DNS-learned addresses exactly while their name is allowed", async () => {
    const dns = { mode: "allowlist" as const, allowDomains: [{ domain: "example.com", includeSubdomains: true }, { domain: "pypi.org", includeSubdomains: false }], denyDomains: [], upstreams: [] };
    const r = await attached(policy({ dns }));
    await learn(r.manager, r.id, "www.example.com", ["203.0.113.5"], 60);
    await learn(r.manager, r.id, "pypi.org", ["203.0.113.6", "2001:db8::6"], 300); // the floor (max(answer TTL, dns.min_ttl)) is the DNS server's now
    expect(r.filter.verdict(r.id, "203.0.113.5")).toBe("allow");
    expect(r.filter.verdict(r.id, "2001:db8::6")).toBe("allow");
    expect(r.filter.entries(r.id).get("203.0.113.5/32")?.expiresAtMs).toBe(r.clock.now + 60_000);
    expect(r.filter.entries(r.id).get("203.0.113.6/32")?.expiresAtMs).toBe(r.clock.now + 300_000);

    // A CIDR rule on a learned address: removing the rule keeps the learned entry.
    await r.manager.applyCommand(r.id, { kind: "allow-cidr", rule: rule("203.0.113.5") });
    await r.manager.applyCommand(r.id, { kind: "remove-cidr", cidr: parseCidr("203.0.113.5") });
    expect(r.filter.verdict(r.id, "203.0.113.5")).toBe("allow");
    expect(r.filter.entries(r.id).get("203.0.113.5/32")?.expiresAtMs).toBe(r.clock.now + 60_000);

    // Bulk update with new DNS rules: pypi.org no longer allowed → its addresses go; example.com stays.
    await r.manager.applyCommand(r.id, {
      kind: "bulk-update",
      mode: "allowlist",
      audit: false,
      allowCidrs: [],
      denyCidrs: [],
      dns: { ...dns, allowDomains: [{ domain: "example.com", includeSubdomains: true }] },
    });
    expect(r.filter.verdict(r.id, "203.0.113.5")).toBe("allow");
    expect(r.filter.verdict(r.id, "203.0.113.6")).toBe("block");
    expect(r.filter.verdict(r.id, "2001:db8::6")).toBe("block");

    // Denying a subdomain drops what it produced.
    await r.manager.applyCommand(r.id, { kind: "deny-domain", rule: { domain: "www.example.com", includeSubdomains: false } });
    expect(r.filter.verdict(r.id, "203.0.113.5")).toBe("block");
    expect(r.manager.policyOf(r.id).dns.denyDomains).toHaveLength(1);
  });

  it("coalesces concurrent DNS inserts and skips addresses already allowed long enough", async () => {
    const r = await attached();
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => learn(r.manager, r.id, `n${i}.test`, [`198.18.0.${i}`], 120)),
    );
    expect(r.filter.calls.filter((c) => c.method === "upsertEntries")).toHaveLength(1);
    expect(r.filter.entries(r.id).size).toBe(50);
    await learn(r.manager, r.id, "n0.test", ["198.18.0.0"], 120);
    expect(r.filter.calls.filter((c) => c.method === "upsertEntries")).toHaveLength(1);
    expect(await codeOf(learn(r.manager, "nf-gone", "x.test", ["1.2.3.4"], 5))).toBe("NOT_FOUND");
  });

  it("collects expired CIDR rules and learned addresses from policy and kernel", async () => {
    const r = await attached();
    const t0 = r.clock.now;
    await r.manager.applyCommand(r.id, { kind: "allow-cidr", rule: rule("100.64.0.0/10", t0 + 5_000) });
    await r.manager.applyCommand(r.id, { kind: "allow-cidr", rule: rule("100.100.0.0/16") });
    await learn(r.manager, r.id, "a.test", ["100.64.1.1"], 3);
    expect(r.filter.verdict(r.id, "100.64.9.9")).toBe("allow");
    r.clock.now = t0 + 3_000;
    expect(await r.manager.collectExpired()).toBe(1);
    expect(r.filter.entries(r.id).has("100.64.1.1/32")).toBe(false);
    expect(r.filter.verdict(r.id, "100.64.1.1")).toBe("allow");
    r.clock.now = t0 + 5_000;
    expect(await r.manager.collectExpired()).toBe(1);
    expect(r.filter.verdict(r.id, "100.64.9.9")).toBe("block");
    expect(r.filter.entries(r.id).has("100.64.0.0/10")).toBe(false);
    expect(r.manager.policyOf(r.id).allowCidrs.map((c) => formatCidr(c.cidr))).toEqual(["100.100.0.0/16"]);
    expect(await r.manager.collectExpired()).toBe(0);
  });

  it("collects TTL rules that arrived by bulk update, by initial policy and after a restart", async () => {
    const clock = { now: 1_700_000_000_000 };
    const store = new MemoryStateStore();
    const bpffs = new FakeBpffs();
    const r = await rig(policy({ allowCidrs: [rule("198.51.100.0/24", clock.now + 2_000)] }), { clock, store, bpffs });
    const v = await r.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    await r.manager.applyCommand(v.id, {
      kind: "bulk-update",
      mode: "allowlist",
      audit: false,
      allowCidrs: [rule("198.51.100.0/24", clock.now + 2_000), rule("203.0.113.0/24", clock.now + 4_000)],
      denyCidrs: [],
      dns: null,
    });
    await r.manager.persist();
    clock.now += 2_000;
    expect(await r.manager.collectExpired()).toBe(1);
    expect(r.filter.entries(v.id).has("198.51.100.0/24")).toBe(false);
    await r.manager.stop();
    const again = await rig(policy(), { clock, store, bpffs, cgroupRoot: r.cgroupRoot });
    clock.now += 2_000;
    expect(await again.manager.collectExpired()).toBe(1);
    expect(again.filter.entries(v.id).size).toBe(0);
    expect(again.manager.policyOf(v.id).allowCidrs).toEqual([]);
  });

  it("applies a burst of 10k single-CIDR commands in order", async () => {
    const r = await attached();
    const ops = Array.from({ length: 10_000 }, (_, i) =>
      r.manager.applyCommand(r.id, { kind: "allow-cidr", rule: rule(`10.${(i >> 8) & 255}.${i & 255}.0/24`) }),
    );
    await Promise.all(ops);
    expect(r.filter.entries(r.id).size).toBe(10_000);
    expect(r.manager.policyOf(r.id).allowCidrs).toHaveLength(10_000);
  });
});

describe("AttachmentManager restart", () => {
  it("re-adopts stored attachments with the same ids, ports, slots, policies and deadlines; keeps orphans; re-creates lost pins", async () => {
    const bpffs = new FakeBpffs();
    const store = new MemoryStateStore();
    const clock = { now: 1_700_000_000_000 };
    const cgroupRoot = fakeCgroupRoot("a", "b", "c");
    const first = await rig(policy({ allowCidrs: [rule("10.0.0.0/8")] }), { bpffs, store, cgroupRoot, clock });
    const a = await first.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: { k: "v" } });
    const b = await first.manager.attach({ target: { kind: "cgroup", path: "b" }, metadata: {} });
    const c = await first.manager.attach({ target: { kind: "cgroup", path: "c" }, metadata: {} });
    await first.manager.applyCommand(a.id, { kind: "allow-cidr", rule: rule("192.0.2.0/24", clock.now + 60_000) });
    await first.manager.applyCommand(c.id, { kind: "allow-cidr", rule: rule("198.51.100.0/24", clock.now + 60_000) });
    await learn(first.manager, a.id, "x.test", ["203.0.113.1"], 100);
    await first.manager.persist();
    const daemonId = first.manager.daemonId;
    const cSlot = bpffs.pinned.get(c.id)!.spec.slot;
    // "Crash": nothing is detached. Then: an orphan pin, a vanished cgroup, and pins lost for c (a reboot).
    bpffs.pinned.set("nf-orphan00000", { ...bpffs.pinned.get(b.id)!, spec: { ...bpffs.pinned.get(b.id)!.spec, id: "nf-orphan00000", slot: 99 } });
    rmSync(path.join(cgroupRoot, "b"), { recursive: true });
    bpffs.pinned.delete(c.id);

    const second = await rig(policy(), { bpffs, store, cgroupRoot, clock });
    expect(second.manager.daemonId).toBe(daemonId);
    expect(second.manager.list().map((v) => v.id).sort()).toEqual([a.id, c.id].sort());
    const again = second.manager.get(a.id);
    expect(again.dnsAddress).toBe(a.dnsAddress);
    expect(again.metadata).toEqual({ k: "v" });
    expect(second.manager.policyOf(a.id).allowCidrs.map((r) => [formatCidr(r.cidr), r.expiresAtMs])).toEqual([
      ["10.0.0.0/8", null],
      ["192.0.2.0/24", clock.now + 60_000],
    ]);
    expect(second.dns.running.get(a.id)?.listen.port).toBe(11000);
    // c is back: same id, slot, DNS port, policy and deadline, enforced again.
    expect(second.manager.get(c.id).dnsAddress).toBe(c.dnsAddress);
    expect(bpffs.pinned.get(c.id)!.spec.slot).toBe(cSlot);
    expect(second.filter.entries(c.id).get("198.51.100.0/24")?.expiresAtMs).toBe(clock.now + 60_000);
    expect(second.filter.verdict(c.id, "198.51.100.7")).toBe("allow");
    expect(second.filter.verdict(c.id, "11.0.0.1")).toBe("block");
    expect(second.dns.running.get(c.id)?.listen.port).toBe(Number(c.dnsAddress.split(":")[1]));
    // The orphan is kept enforcing and reported, never detached.
    expect((await second.filter.listPinned()).sort()).toEqual([a.id, c.id, "nf-orphan00000"].sort());
    expect(second.manager.orphans().map((o) => [o.id, o.slot])).toEqual([["nf-orphan00000", 99]]);
    expect(second.filter.calls.filter((x) => x.method === "detach").map((x) => x.id)).toEqual([b.id]);
    expect(second.source.unsubscribedCalls.map((u) => [u.id, u.reason])).toEqual([[b.id, "removed"]]);
    // Still driveable, and learned addresses survived (removing the name's rule drops them).
    await second.manager.applyCommand(a.id, { kind: "set-mode", mode: "allowlist", audit: null });
    expect(second.filter.verdict(a.id, "203.0.113.1")).toBe("allow");
    clock.now += 100_000;
    await second.manager.collectExpired();
    expect(second.filter.entries(a.id).has("203.0.113.1/32")).toBe(false);
    // New attachments do not reuse the adopted or re-created slots and ports.
    mkdirSync(path.join(cgroupRoot, "d"));
    writeFileSync(path.join(cgroupRoot, "d", "cgroup.procs"), "");
    const d = await second.manager.attach({ target: { kind: "cgroup", path: "d" }, metadata: {} });
    expect([a.dnsAddress, c.dnsAddress]).not.toContain(d.dnsAddress);
  });

  it("restore off: a stored attachment whose pins are gone is dropped even when its target is there", async () => {
    const bpffs = new FakeBpffs();
    const store = new MemoryStateStore();
    const cgroupRoot = fakeCgroupRoot("a");
    const first = await rig(policy(), { bpffs, store, cgroupRoot });
    const a = await first.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    await first.manager.stop();
    bpffs.pinned.delete(a.id);
    const second = await rig(policy(), { bpffs, store, cgroupRoot, restore: false });
    expect(second.manager.list()).toEqual([]);
    expect(await second.filter.listPinned()).toEqual([]);
    expect(second.source.unsubscribedCalls).toEqual([{ id: a.id, reason: "removed" }]);
  });

  it("a pinned filter that is no longer attached is attached again at adoption", async () => {
    const bpffs = new FakeBpffs();
    const store = new MemoryStateStore();
    const cgroupRoot = fakeCgroupRoot("a");
    const first = await rig(policy({ mode: "block-all" }), { bpffs, store, cgroupRoot });
    const a = await first.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    await first.manager.stop();
    bpffs.pinned.get(a.id)!.detached = true;
    const second = await rig(policy(), { bpffs, store, cgroupRoot });
    expect(second.filter.calls.filter((c) => c.method === "relink").map((c) => c.id)).toEqual([a.id]);
    expect(bpffs.pinned.get(a.id)!.detached).toBe(false);
    expect(second.manager.get(a.id).mode).toBe("block-all");
  });

  it("orphans block their target; adopt re-registers one with the policy read back from its pins; detach --orphan removes one", async () => {
    const bpffs = new FakeBpffs();
    const cgroupRoot = fakeCgroupRoot("a", "b");
    const clock = { now: 1_700_000_000_000 };
    const first = await rig(policy({ mode: "denylist", denyCidrs: [rule("192.0.2.0/24", clock.now + 60_000)] }), { bpffs, cgroupRoot, clock });
    const a = await first.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    const b = await first.manager.attach({ target: { kind: "cgroup", path: "b" }, metadata: {} });
    await first.manager.stop();
    // The state is lost (a fresh store): both are orphans, still pinned and enforcing.
    const second = await rig(policy(), { bpffs, cgroupRoot, clock, store: new MemoryStateStore() });
    expect(second.manager.list()).toEqual([]);
    expect(second.manager.orphans().map((o) => o.id).sort()).toEqual([a.id, b.id].sort());
    expect(second.filter.verdict(a.id, "192.0.2.1")).toBe("block");
    expect(await codeOf(second.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} }))).toBe("FAILED_PRECONDITION");

    const view = await second.manager.adoptOrphan(a.id);
    expect(view).toMatchObject({ id: a.id, mode: "denylist", dnsAddress: a.dnsAddress, target: path.join(cgroupRoot, "a") });
    expect(second.manager.policyOf(a.id).denyCidrs.map((r) => [formatCidr(r.cidr), r.expiresAtMs])).toEqual([["192.0.2.0/24", clock.now + 60_000]]);
    expect(second.dns.running.get(a.id)?.listen.port).toBe(Number(a.dnsAddress.split(":")[1]));
    expect(second.manager.orphans().map((o) => o.id)).toEqual([b.id]);
    expect(second.manager.snapshot().attachments.map((x) => x.id)).toEqual([a.id]);
    await second.manager.applyCommand(a.id, { kind: "set-mode", mode: "block-all", audit: null });
    expect(second.filter.verdict(a.id, "10.0.0.1")).toBe("block");
    expect(await codeOf(second.manager.adoptOrphan(a.id))).toBe("NOT_FOUND");

    await second.manager.detachOrphan(b.id);
    expect(await second.filter.listPinned()).toEqual([a.id]);
    expect(second.manager.orphans()).toEqual([]);
    expect(await codeOf(second.manager.detachOrphan(b.id))).toBe("NOT_FOUND");
  });

  it("keeps an attachment it cannot adopt: pins left in place, record kept, port reserved, detachable", async () => {
    const bpffs = new FakeBpffs();
    const store = new MemoryStateStore();
    const cgroupRoot = fakeCgroupRoot("a", "b");
    const first = await rig(policy(), { bpffs, store, cgroupRoot, dns: { listenAddr: "127.0.0.1", portMin: 11000, portMax: 11001 } });
    const a = await first.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    await first.manager.stop();

    const filter = new FakeFilter(bpffs);
    filter.failNext("adopt", new NetfenceError("FAILED_PRECONDITION", "incompatible pin layout"));
    const source = new RecordingPolicySource(policy());
    const second = new AttachmentManager({
      filter,
      policySource: source,
      store,
      dnsServers: new FakeDnsServers(),
      logger: silentLogger,
      dns: { listenAddr: "127.0.0.1", portMin: 11000, portMax: 11001 },
      cgroupRoot,
      gcIntervalMs: 0,
    });
    managers.push(second);
    const report = await second.start();
    expect(report.unadopted).toEqual([a.id]);
    expect(second.list()).toEqual([]);
    expect(await filter.listPinned()).toEqual([a.id]);
    expect(second.snapshot().attachments.map((x) => x.id)).toEqual([a.id]);
    expect(await codeOf(second.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} }))).toBe("ALREADY_EXISTS");
    const b = await second.attach({ target: { kind: "cgroup", path: "b" }, metadata: {} });
    expect(b.dnsAddress).not.toBe(a.dnsAddress);
    await second.detach(a.id);
    expect(await filter.listPinned()).toEqual([b.id]);
    expect(second.snapshot().attachments.map((x) => x.id)).toEqual([b.id]);
  });

  it("re-applies the stored policy when the kernel's mode disagrees (crash between a kernel change and its save)", async () => {
    const bpffs = new FakeBpffs();
    const store = new MemoryStateStore();
    const cgroupRoot = fakeCgroupRoot("a");
    const first = await rig(policy({ allowCidrs: [rule("10.0.0.0/8")] }), { bpffs, store, cgroupRoot });
    const a = await first.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    await first.manager.stop();
    bpffs.pinned.get(a.id)!.mode = "block-all";
    const second = await rig(policy(), { bpffs, store, cgroupRoot });
    expect(second.filter.calls.filter((c) => c.method === "replacePolicy").map((c) => c.id)).toEqual([a.id]);
    expect(second.filter.verdict(a.id, "10.1.1.1")).toBe("allow");
    expect(second.manager.get(a.id).mode).toBe("allowlist");
  });

  it("retries a DNS server that could not bind at restart", async () => {
    const bpffs = new FakeBpffs();
    const store = new MemoryStateStore();
    const cgroupRoot = fakeCgroupRoot("a");
    const first = await rig(policy(), { bpffs, store, cgroupRoot });
    const a = await first.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    await first.manager.stop();
    const dns = new FakeDnsServers();
    dns.busyPorts.add(11000);
    const second = await rig(policy(), { bpffs, store, cgroupRoot, dnsServers: dns });
    expect(second.manager.list().map((v) => v.id)).toEqual([a.id]); // still listed and enforcing
    expect(dns.running.size).toBe(0);
    await second.manager.checkIntegrity();
    expect(dns.running.size).toBe(0);
    dns.busyPorts.clear();
    await second.manager.checkIntegrity();
    expect(dns.running.get(a.id)?.listen.port).toBe(11000);
  });
});
