import { afterEach, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import { AttachmentManager } from "../../../daemon/src/attachments/manager.js";
import { FakeBpffs, FakeFilter } from "../../../daemon/src/datapath/fake-filter.js";
import { MemoryStateStore, type StateStore } from "../../../daemon/src/store/state-store.js";
import { NetfenceError } from "@netfence/proto/errors";
import { parseCidr } from "@netfence/proto/parse";
import type { AttachmentPolicy } from "../../../daemon/src/policy/policy.js";
import { FakeDnsServers, RecordingPolicySource, fakeCgroupRoot, policy, silentLogger } from "./fakes.js";

// Start-up migration of pins of another layout (attachments/migration.ts), on the fake filter: the
// order of the primitives, the rollback, and what the manager reports. The kernel behaviour (no
// gap, old program detached, DNS served) is proven by test/kernel/migration/layout-migration.test.ts.

const managers: AttachmentManager[] = [];
const roots: string[] = [];

async function rig(bpffs: FakeBpffs, store: StateStore, cgroupRoot: string, pol: AttachmentPolicy = policy()) {
  const filter = new FakeFilter(bpffs);
  const dns = new FakeDnsServers();
  const manager = new AttachmentManager({
    filter, policySource: new RecordingPolicySource(pol), store, dnsServers: dns, logger: silentLogger,
    dns: { listenAddr: "127.0.0.1", portMin: 11000, portMax: 11010 }, cgroupRoot, gcIntervalMs: 0, fallbackDaemonId: "nfd-test",
  });
  managers.push(manager);
  await manager.start();
  return { manager, filter, dns };
}

afterEach(async () => {
  for (const m of managers.splice(0)) await m.stop();
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

describe("migration of pins of another layout at start", () => {
  it("re-creates the stored attachment beside the old pins, then removes them; DNS runs; a warning says so", async () => {
    const bpffs = new FakeBpffs();
    const store = new MemoryStateStore();
    const root = fakeCgroupRoot("a");
    roots.push(root);
    const first = await rig(bpffs, store, root, policy({ mode: "allowlist", allowCidrs: [{ cidr: parseCidr("192.0.2.0/24"), expiresAtMs: null }] }));
    const a = await first.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: { vm: "1" } });
    await first.manager.stop();
    bpffs.pinned.get(a.id)!.layout = 3;

    const second = await rig(bpffs, store, root);
    const calls = second.filter.calls.map((c) => c.method);
    expect(calls.slice(calls.indexOf("beginMigration"))).toEqual(["beginMigration", "attach", "finishMigration"]);
    expect(second.manager.list().map((v) => [v.id, v.dnsAddress, v.mode])).toEqual([[a.id, a.dnsAddress, "allowlist"]]);
    expect(second.dns.running.has(a.id)).toBe(true);
    expect(bpffs.aside.size).toBe(0);
    expect(bpffs.pinned.get(a.id)!.layout).toBeUndefined();
    expect(second.filter.verdict(a.id, "192.0.2.7")).toBe("allow");
    expect(second.filter.verdict(a.id, "198.51.100.1")).toBe("block");
    expect(second.manager.warnings().join("\n")).toMatch(new RegExp(`${a.id}.*layout 3.*migrated`));
  });

  it("a failed re-attach rolls back: the old pins are renamed back, the attachment stays unadopted", async () => {
    const bpffs = new FakeBpffs();
    const store = new MemoryStateStore();
    const root = fakeCgroupRoot("a");
    roots.push(root);
    const first = await rig(bpffs, store, root);
    const a = await first.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    await first.manager.stop();
    bpffs.pinned.get(a.id)!.layout = 3;
    const old = bpffs.pinned.get(a.id);

    const filter = new FakeFilter(bpffs);
    filter.failNext("attach", new NetfenceError("ALREADY_EXISTS", "clsact priority taken"));
    const manager = new AttachmentManager({
      filter, policySource: new RecordingPolicySource(policy()), store, dnsServers: new FakeDnsServers(), logger: silentLogger,
      dns: { listenAddr: "127.0.0.1", portMin: 11000, portMax: 11010 }, cgroupRoot: root, gcIntervalMs: 0, fallbackDaemonId: "nfd-test",
    });
    managers.push(manager);
    await manager.start();
    expect(filter.calls.map((c) => c.method).slice(-3)).toEqual(["beginMigration", "attach", "abortMigration"]);
    expect(bpffs.pinned.get(a.id)).toBe(old); // the very same pins, back in place
    expect(bpffs.aside.size).toBe(0);
    expect(manager.list()).toEqual([]);
    expect(manager.warnings().join("\n")).toMatch(/could not be migrated \(clsact priority taken\)/);
  });

  it("a failed finish detaches the new attachment and renames the old pins back", async () => {
    const bpffs = new FakeBpffs();
    const store = new MemoryStateStore();
    const root = fakeCgroupRoot("a");
    roots.push(root);
    const first = await rig(bpffs, store, root);
    const a = await first.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    await first.manager.stop();
    bpffs.pinned.get(a.id)!.layout = 3;
    const filter = new FakeFilter(bpffs);
    filter.failNext("finishMigration");
    const manager = new AttachmentManager({
      filter, policySource: new RecordingPolicySource(policy()), store, dnsServers: new FakeDnsServers(), logger: silentLogger,
      dns: { listenAddr: "127.0.0.1", portMin: 11000, portMax: 11010 }, cgroupRoot: root, gcIntervalMs: 0, fallbackDaemonId: "nfd-test",
    });
    managers.push(manager);
    await manager.start();
    expect(filter.calls.map((c) => c.method).slice(-5)).toEqual(["beginMigration", "attach", "finishMigration", "detach", "abortMigration"]);
    expect(bpffs.pinned.get(a.id)!.layout).toBe(3);
    expect(manager.list()).toEqual([]);
  });

  it("old pins a crash left set aside are renamed back and migrated again", async () => {
    const bpffs = new FakeBpffs();
    const store = new MemoryStateStore();
    const root = fakeCgroupRoot("a");
    roots.push(root);
    const first = await rig(bpffs, store, root);
    const a = await first.manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    await first.manager.stop();
    const p = bpffs.pinned.get(a.id)!;
    p.layout = 3;
    bpffs.pinned.delete(a.id);
    bpffs.aside.set(a.id, p); // crashed between MIGRATE_BEGIN and the new attach
    const second = await rig(bpffs, store, root);
    expect(second.manager.list().map((v) => v.id)).toEqual([a.id]);
    expect(bpffs.aside.size).toBe(0);
    expect(second.filter.calls.map((c) => c.method)).toContain("abortMigration");
  });
});
