import { afterEach, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import { AttachmentManager } from "../../../daemon/src/attachments/manager.js";
import { FakeFilter } from "../../../daemon/src/datapath/fake-filter.js";
import type { FilterEntry } from "../../../daemon/src/policy/compiled.js";
import { MemoryStateStore } from "../../../daemon/src/store/state-store.js";
import { FakeDnsServers, RecordingPolicySource, learn, fakeCgroupRoot, policy, silentLogger } from "./fakes.js";

// The learned-address writer's coalescing (attachments/learned-writer.ts): writes that arrive
// while one is in flight go as one batch — one upsert (one loader frame) — when it is done.

/** A filter whose upserts take a while, like the loader round trip. */
class SlowFilter extends FakeFilter {
  upserts: number[] = [];
  override async upsertEntries(id: string, entries: readonly FilterEntry[]): Promise<void> {
    this.upserts.push(entries.length);
    await new Promise((r) => setTimeout(r, 40));
    return super.upsertEntries(id, entries);
  }
}

const roots: string[] = [];
const managers: AttachmentManager[] = [];
afterEach(async () => {
  for (const m of managers.splice(0)) await m.stop();
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

describe("learned-address writer coalescing", () => {
  it("writes arriving over several event-loop turns while one is in flight become one upsert", async () => {
    const cgroupRoot = fakeCgroupRoot("a");
    roots.push(cgroupRoot);
    const filter = new SlowFilter();
    const manager = new AttachmentManager({
      filter,
      policySource: new RecordingPolicySource(policy({ dns: { mode: "denylist", allowDomains: [], denyDomains: [], upstreams: [] } })),
      store: new MemoryStateStore(),
      dnsServers: new FakeDnsServers(),
      logger: silentLogger,
      dns: { listenAddr: "127.0.0.1", portMin: 11000, portMax: 11010, quotas: { qps: 1000, inflight: 128, learned: 16384, answerRecords: 32, tcpConnections: 32, tcpPerSource: 8 } },
      cgroupRoot,
      gcIntervalMs: 0,
      integrityIntervalMs: 0,
      fallbackDaemonId: "nfd-test",
    });
    managers.push(manager);
    await manager.start();
    const { id } = await manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    filter.upserts = [];
    const first = learn(manager, id, "n0.test", ["192.0.2.1"], 600);
    await new Promise((r) => setTimeout(r, 10)); // the first write is at the filter now
    const more: ReturnType<typeof learn>[] = [];
    for (let i = 1; i <= 5; i++) {
      more.push(learn(manager, id, `n${i}.test`, [`192.0.2.${i + 1}`], 600));
      await new Promise((r) => setImmediate(r)); // each in its own event-loop turn
    }
    await Promise.all([first, ...more]);
    expect(filter.upserts).toEqual([1, 5]);
    expect(manager.learnedSink.epoch(id)).toBeGreaterThan(0);
  });
});
