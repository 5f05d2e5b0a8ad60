import { describe, expect, it } from "vitest";
import { parseCidr } from "@netfence/proto/parse";
import { LearnedInserter } from "../../../daemon/src/dns/learned-inserter.js";
import { RecordingAllower } from "./helpers/fake-dns.js";

const v4 = (address: string) => parseCidr(address);
const text = (address: string) => ({ family: 4 as const, address });

describe("LearnedInserter", () => {
  it("sends each address of a name once while it is in flight and settles all callers", async () => {
    const sink = new RecordingAllower();
    sink.delayMs = 5;
    const inserter = new LearnedInserter("att", sink, 300);
    const p1 = inserter.ensure("a.test", [v4("192.0.2.1")], 60);
    const p2 = inserter.ensure("a.test", [v4("192.0.2.2"), v4("192.0.2.1")], 60);
    await Promise.all([p1, p2]);
    expect(sink.calls).toEqual([
      { attachmentId: "att", name: "a.test", addresses: [text("192.0.2.1")], ttlSeconds: 300 },
      { attachmentId: "att", name: "a.test", addresses: [text("192.0.2.2")], ttlSeconds: 300 },
    ]);
  });

  it("applies the TTL floor: max(answer TTL, minimum)", async () => {
    const sink = new RecordingAllower();
    sink.delayMs = 1;
    const inserter = new LearnedInserter("att", sink, 300);
    await inserter.ensure("a.test", [v4("192.0.2.1")], 0);
    await inserter.ensure("c.test", [v4("192.0.2.3")], 600);
    expect(sink.calls.map((c) => [c.name, c.ttlSeconds])).toEqual([["a.test", 300], ["c.test", 600]]);
  });

  it("skips addresses with half their TTL left (the one dedupe rule), awaits ones in flight, and re-inserts when they run low", async () => {
    let now = 1_000_000;
    const sink = new RecordingAllower();
    sink.delayMs = 5;
    const inserter = new LearnedInserter("att", sink, 300, () => now);
    const first = inserter.ensure("a.test", [v4("192.0.2.1")], 60);
    await new Promise((r) => setImmediate(r)); // sent, not yet acknowledged
    const second = inserter.ensure("a.test", [v4("192.0.2.1")], 60);
    expect(second).not.toBeNull();
    await Promise.all([first, second]);
    expect(sink.calls).toHaveLength(1);
    now += 100_000; // 200 s left ≥ half of 300 s
    expect(inserter.ensure("a.test", [v4("192.0.2.1")], 60)).toBeNull();
    now += 100_000; // 100 s left < 150 s
    await inserter.ensure("a.test", [v4("192.0.2.1")], 60);
    expect(sink.calls).toHaveLength(2);
    // the same address for another name is its own entry (the manager tracks name → address)
    await inserter.ensure("b.test", [v4("192.0.2.1")], 60);
    expect(sink.calls).toHaveLength(3);
    inserter.forgetRecent();
    await inserter.ensure("a.test", [v4("192.0.2.1")], 60);
    expect(sink.calls).toHaveLength(4);
  });

  it("rejects every waiter of a failed write and retries next time", async () => {
    const sink = new RecordingAllower();
    sink.delayMs = 1;
    sink.failWith = new Error("loader down");
    const inserter = new LearnedInserter("att", sink, 300);
    const a = inserter.ensure("a.test", [v4("192.0.2.1")], 0);
    const b = inserter.ensure("a.test", [v4("192.0.2.1")], 0);
    await expect(a).rejects.toThrow("loader down");
    await expect(b).rejects.toThrow("loader down");
    sink.failWith = null;
    await inserter.ensure("a.test", [v4("192.0.2.1")], 0);
    expect(sink.calls).toHaveLength(2);
  });
});
