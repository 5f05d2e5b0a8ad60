import { afterEach, describe, expect, it } from "vitest";
import { NOTHING_REFUSED } from "../../../daemon/src/dns/learned-sink.js";
import dgram from "node:dgram";
import { rmSync } from "node:fs";
import { AttachmentManager } from "../../../daemon/src/attachments/manager.js";
import { createDnsServerFactory } from "../../../daemon/src/dns/dns-server-factory.js";
import { bindDnsSockets, closeSockets } from "../../../daemon/src/dns/dns-port.js";
import { FakeFilter } from "../../../daemon/src/datapath/fake-filter.js";
import { MemoryStateStore } from "../../../daemon/src/store/state-store.js";
import { RecordingPolicySource, fakeCgroupRoot, policy, silentLogger } from "./fakes.js";

// The manager with the real DNS server factory: ports are allocated by binding, squatted ports
// are skipped, and a port squatted while the daemon was down is reported and retried.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function freeRange(n: number): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const probe = await bindDnsSockets("127.0.0.1", 0);
    await closeSockets(probe);
    if (probe.port + n > 65535) continue;
    try {
      const held = [];
      for (let p = probe.port; p < probe.port + n; p++) held.push(await bindDnsSockets("127.0.0.1", p));
      for (const h of held) await closeSockets(h);
      return probe.port;
    } catch {
      continue;
    }
  }
  throw new Error("no free range");
}

async function squat(port: number): Promise<() => Promise<void>> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(port, "127.0.0.1", () => r()));
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await new Promise<void>((r) => s.close(() => r()));
  };
  cleanups.push(close);
  return close;
}

function makeManager(base: number, store: MemoryStateStore, filter: FakeFilter, cgroupRoot: string): AttachmentManager {
  const factory = createDnsServerFactory({ defaultUpstreams: ["127.0.0.1:9"], learned: { write: async () => NOTHING_REFUSED, epoch: () => 0 }, logger: silentLogger });
  const m = new AttachmentManager({
    filter, policySource: new RecordingPolicySource(policy()), store, dnsServers: factory, logger: silentLogger,
    dns: { listenAddr: "127.0.0.1", portMin: base, portMax: base + 3 }, cgroupRoot,
    gcIntervalMs: 0, integrityIntervalMs: 0, fallbackDaemonId: "nfd-test",
  });
  cleanups.push(() => m.stop());
  return m;
}

describe("DNS ports allocated by binding", () => {
  it("an unprivileged squatter on the next free port does not make attaches fail: it is skipped", async () => {
    const base = await freeRange(4);
    const cgroupRoot = fakeCgroupRoot("a", "b", "c");
    cleanups.push(() => rmSync(cgroupRoot, { recursive: true, force: true }));
    await squat(base);
    await squat(base + 2);
    const m = makeManager(base, new MemoryStateStore(), new FakeFilter(), cgroupRoot);
    await m.start();
    const a = await m.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    const b = await m.attach({ target: { kind: "cgroup", path: "b" }, metadata: {} });
    expect([a.dnsAddress, b.dnsAddress]).toEqual([`127.0.0.1:${base + 1}`, `127.0.0.1:${base + 3}`]);
    await expect(m.attach({ target: { kind: "cgroup", path: "c" }, metadata: {} })).rejects.toMatchObject({
      code: "RESOURCE_EXHAUSTED", message: expect.stringContaining("2 held by other processes"),
    });
    expect(m.dnsStates().map((s) => s.listening)).toEqual([true, true]);
  });

  it("keeps an attachment's port across a restart; a port squatted meanwhile is reported and retried until free", async () => {
    const base = await freeRange(4);
    const cgroupRoot = fakeCgroupRoot("a");
    cleanups.push(() => rmSync(cgroupRoot, { recursive: true, force: true }));
    const store = new MemoryStateStore();
    const filter = new FakeFilter();
    const first = makeManager(base, store, filter, cgroupRoot);
    await first.start();
    const a = await first.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    await first.stop();
    const release = await squat(base); // the daemon is down: someone takes the tenant's port
    const second = makeManager(base, store, filter, cgroupRoot);
    await second.start();
    expect(second.get(a.id).dnsAddress).toBe(`127.0.0.1:${base}`); // never moved to another port
    expect(second.dnsStates()).toEqual([{ id: a.id, listening: false, learned: 0, outcomes: {} }]);
    await second.checkIntegrity();
    expect(second.dnsStates()[0]!.listening).toBe(false);
    await release();
    await second.checkIntegrity();
    expect(second.dnsStates()[0]!.listening).toBe(true);
  });
});
