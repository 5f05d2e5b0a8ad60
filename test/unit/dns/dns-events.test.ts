import { describe, expect, it } from "vitest";
import { DnsEventReporter, type DnsEvent } from "../../../daemon/src/dns/dns-events.js";
import type { KernelPacketEvent } from "../../../daemon/src/datapath/filter.js";
import { mergeAsync } from "../../../daemon/src/merged-events.js";
import { packetEventToWire } from "../../../daemon/src/rpc/packet-event.js";

const event = (over: Partial<DnsEvent> = {}): DnsEvent => ({
  attachmentId: "nf-1", reason: "dns-rebind-guard", src: "", srcPort: 0, dst: "169.254.169.254", dstPort: 0, protocol: 0, rule: "evil.test", ...over,
});

async function take<T>(it: AsyncIterator<T>, n: number): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i++) {
    const r = await Promise.race([it.next(), new Promise<IteratorResult<T>>((res) => setTimeout(() => res({ value: undefined, done: true }), 200))]);
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

describe("DnsEventReporter", () => {
  it("publishes PacketEvent-shaped events and folds identical ones within 10 s, carrying the count", async () => {
    const clock = { now: 1_000_000 };
    const seen: string[] = [];
    const reporter = new DnsEventReporter((e) => seen.push(e.reason), () => clock.now);
    const sub = reporter.events()[Symbol.asyncIterator]();
    reporter.report(event());
    reporter.report(event());
    reporter.report(event());
    reporter.report(event({ dst: "127.0.0.1", rule: "local.test" }));
    clock.now += 10_001;
    reporter.report(event());
    const got = await take(sub, 5);
    expect(got.map((e) => [e.dst, e.rule, e.suppressed])).toEqual([
      ["169.254.169.254", "evil.test", 0], ["127.0.0.1", "local.test", 0], ["169.254.169.254", "evil.test", 2],
    ]);
    expect(got[0]).toMatchObject({ attachmentId: "nf-1", reason: "dns-rebind-guard", verdict: "blocked", family: 4, slot: 0 });
    expect(seen).toHaveLength(5); // metrics see every event, folded or not
    const wire = packetEventToWire(got[0]!);
    expect([wire.reason, wire.dst, wire.rule, wire.attachmentId]).toEqual(["dns-rebind-guard", "169.254.169.254", "evil.test", "nf-1"]);
    reporter.close();
  });
});

describe("mergeAsync", () => {
  it("interleaves sources in arrival order, ends when all end, and stops every source on return", async () => {
    const a = new DnsEventReporter();
    const b = new DnsEventReporter();
    const merged = mergeAsync<KernelPacketEvent>(a.events(), b.events())[Symbol.asyncIterator]();
    a.report(event({ rule: "a1" }));
    b.report(event({ rule: "b1" }));
    a.report(event({ rule: "a2" }));
    const got = await take(merged, 3);
    expect(got.map((e) => e.rule).sort()).toEqual(["a1", "a2", "b1"]);
    a.close();
    b.report(event({ rule: "b2" }));
    expect((await take(merged, 1)).map((e) => e.rule)).toEqual(["b2"]);
    b.close();
    expect(await merged.next()).toEqual({ value: undefined, done: true });
    const again = mergeAsync<KernelPacketEvent>(new DnsEventReporter().events())[Symbol.asyncIterator]();
    expect(await again.return!()).toEqual({ value: undefined, done: true });
  });
});
