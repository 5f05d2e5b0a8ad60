import { afterEach, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import { AttachmentManager } from "../../../daemon/src/attachments/manager.js";
import { FakeBpffs, FakeFilter } from "../../../daemon/src/datapath/fake-filter.js";
import { MemoryStateStore } from "../../../daemon/src/store/state-store.js";
import { FakeDnsServers, RecordingPolicySource, fakeCgroupRoot, policy, silentLogger } from "./fakes.js";

// `netfenced flush` against attaches on their way (issue 15): an attach that started before the
// flush finishes first and is then detached with the rest — it must not complete after the flush
// listed the attachments and survive it — and attach/adopt are refused once the flush began.

const roots: string[] = [];
const managers: AttachmentManager[] = [];
afterEach(async () => {
  for (const m of managers.splice(0)) await m.stop();
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

describe("flush and attaches in flight", () => {
  it("waits for the attach in flight, detaches it too, and refuses attaches from then on", async () => {
    const cgroupRoot = fakeCgroupRoot("a", "b", "c");
    roots.push(cgroupRoot);
    const bpffs = new FakeBpffs();
    const filter = new FakeFilter(bpffs);
    let release = (): void => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const attach = filter.attach.bind(filter);
    let gated = 0;
    filter.attach = async (spec, p) => {
      if (gated++ === 1) await gate; // the second attach is slow: still in the kernel when the flush starts
      return attach(spec, p);
    };
    const manager = new AttachmentManager({
      filter, policySource: new RecordingPolicySource(policy()), store: new MemoryStateStore(), dnsServers: new FakeDnsServers(), logger: silentLogger,
      dns: { listenAddr: "127.0.0.1", portMin: 11000, portMax: 11010 }, cgroupRoot, now: () => 1_700_000_000_000, gcIntervalMs: 0, fallbackDaemonId: "nfd-test",
    });
    managers.push(manager);
    await manager.start();
    const first = await manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    const slow = manager.attach({ target: { kind: "cgroup", path: "b" }, metadata: {} });
    await new Promise((r) => setTimeout(r, 10));
    const flushing = manager.flush();
    await expect(manager.attach({ target: { kind: "cgroup", path: "c" }, metadata: {} })).rejects.toMatchObject({ code: "FAILED_PRECONDITION" });
    release();
    const second = await slow;
    const r = await flushing;
    expect(r.detached.sort()).toEqual([first.id, second.id].sort());
    expect(manager.size).toBe(0);
    expect(await filter.listPinned()).toEqual([]);
  });
});
