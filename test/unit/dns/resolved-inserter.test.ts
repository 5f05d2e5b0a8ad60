import { describe, expect, it } from "vitest";
import { ResolvedInserter } from "../../../daemon/src/dns/resolved-inserter.js";
import type { ResolvedBatchAllower, ResolvedBatchItem } from "../../../daemon/src/dns/resolved-inserter.js";
import type { ResolvedAddress } from "../../../daemon/src/dns/resolved-allower.js";
import { RecordingAllower } from "./helpers/fake-dns.js";

const v4 = (address: string): ResolvedAddress => ({ family: 4, address });

describe("ResolvedInserter", () => {
  it("coalesces same-turn inserts of one name into one call and settles all callers", async () => {
    const allower = new RecordingAllower();
    allower.delayMs = 5;
    const inserter = new ResolvedInserter("att", allower);
    const p1 = inserter.ensure("a.test", [v4("192.0.2.1")], 300, 60);
    const p2 = inserter.ensure("a.test", [v4("192.0.2.2"), v4("192.0.2.1")], 300, 60);
    await Promise.all([p1, p2]);
    expect(allower.calls).toEqual([{ attachmentId: "att", name: "a.test", addresses: [v4("192.0.2.1"), v4("192.0.2.2")], ttlSeconds: 300 }]);
  });

  it("uses allowResolvedMany when the allower offers it: one call per turn for many names", async () => {
    const batches: ResolvedBatchItem[][] = [];
    const allower: ResolvedBatchAllower = {
      allowResolved: () => Promise.reject(new Error("single calls not expected")),
      allowResolvedMany: async (_id, items) => {
        batches.push([...items]);
      },
    };
    const inserter = new ResolvedInserter("att", allower);
    await Promise.all([
      inserter.ensure("a.test", [v4("192.0.2.1")], 300, 0),
      inserter.ensure("b.test", [v4("192.0.2.2")], 300, 0),
      inserter.ensure("c.test", [v4("192.0.2.3")], 600, 600),
    ]);
    expect(batches).toHaveLength(1);
    expect(batches[0]!.map((i) => [i.name, i.ttlSeconds])).toEqual([["a.test", 300], ["b.test", 300], ["c.test", 600]]);
  });

  it("skips addresses with enough TTL left, awaits ones in flight, and re-inserts when they run low", async () => {
    let now = 1_000_000;
    const allower = new RecordingAllower();
    allower.delayMs = 5;
    const inserter = new ResolvedInserter("att", allower, () => now);
    const first = inserter.ensure("a.test", [v4("192.0.2.1")], 300, 60);
    await new Promise((r) => setImmediate(r)); // flushed, not yet acknowledged
    const second = inserter.ensure("a.test", [v4("192.0.2.1")], 300, 60);
    expect(second).not.toBeNull();
    await Promise.all([first, second]);
    expect(allower.calls).toHaveLength(1);
    now += 200_000; // 100 s left ≥ the 60 s answer TTL
    expect(inserter.ensure("a.test", [v4("192.0.2.1")], 300, 60)).toBeNull();
    now += 50_000; // 50 s left < 60 s
    await inserter.ensure("a.test", [v4("192.0.2.1")], 300, 60);
    expect(allower.calls).toHaveLength(2);
    // the same address for another name is its own entry (the manager tracks name → address)
    await inserter.ensure("b.test", [v4("192.0.2.1")], 300, 60);
    expect(allower.calls).toHaveLength(3);
    inserter.forgetRecent();
    await inserter.ensure("a.test", [v4("192.0.2.1")], 300, 60);
    expect(allower.calls).toHaveLength(4);
  });

  it("rejects every waiter of a failed batch and retries next time", async () => {
    const allower = new RecordingAllower();
    allower.delayMs = 1;
    allower.failWith = new Error("loader down");
    const inserter = new ResolvedInserter("att", allower);
    const a = inserter.ensure("a.test", [v4("192.0.2.1")], 300, 0);
    const b = inserter.ensure("a.test", [v4("192.0.2.1")], 300, 0);
    await expect(a).rejects.toThrow("loader down");
    await expect(b).rejects.toThrow("loader down");
    allower.failWith = null;
    await inserter.ensure("a.test", [v4("192.0.2.1")], 300, 0);
    expect(allower.calls).toHaveLength(2);
  });
});
