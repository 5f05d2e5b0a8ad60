import { describe, expect, it } from "vitest";
import { EventForwarder, type EventSink } from "../../../daemon/src/event-forwarder.js";
import { FakeFilter } from "../../../daemon/src/datapath/fake-filter.js";
import type { PacketEvent } from "@netfence/proto/control";
import { Verdict } from "@netfence/proto/control";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function blockAllFilter(): Promise<FakeFilter> {
  const filter = new FakeFilter();
  await filter.attach(
    { id: "nf-ev", slot: 1, target: { kind: "cgroup", path: "/x" }, dns: { ipv4: null, ipv6: null, port: 0 } },
    { mode: "block-all", audit: false, entries: [] },
  );
  return filter;
}

class Sink implements EventSink {
  batches: PacketEvent[][] = [];
  up = true;
  wanted = true;
  wantsPacketEvents(): boolean {
    return this.wanted;
  }
  publishEvents(b: readonly PacketEvent[]): boolean {
    if (!this.up) return false;
    this.batches.push([...b]);
    return true;
  }
}

async function until(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond() && Date.now() < deadline) await sleep(20);
}

describe("EventForwarder", () => {
  it("batches kernel events with the attachment's metadata and counts what it could not deliver", async () => {
    const filter = await blockAllFilter();
    const sink = new Sink();
    const dropped: number[] = [];
    const fwd = new EventForwarder(filter.events(), sink, {
      intervalMs: 50,
      metadataOf: (id) => (id === "nf-ev" ? { tenant: "t1" } : undefined),
      onDropped: (n) => dropped.push(n),
    });
    fwd.start();
    await sleep(20);
    filter.sendPacket("nf-ev", "192.0.2.1", { port: 22 });
    filter.sendPacket("nf-ev", "192.0.2.2", { port: 23 });
    await until(() => sink.batches.length > 0);
    expect(sink.batches).toHaveLength(1);
    expect(sink.batches[0]!.map((e) => [e.attachmentId, e.dst, e.dstPort, e.verdict, e.metadata])).toEqual([
      ["nf-ev", "192.0.2.1", 22, Verdict.BLOCKED, { tenant: "t1" }],
      ["nf-ev", "192.0.2.2", 23, Verdict.BLOCKED, { tenant: "t1" }],
    ]);
    sink.up = false;
    filter.sendPacket("nf-ev", "192.0.2.3");
    await until(() => fwd.dropped > 0);
    expect(fwd.dropped).toBe(1);
    expect(dropped).toEqual([1]);
    fwd.stop();
    await filter.close();
  });

  it("keeps nothing while the control plane did not ask for events (SyncAck.packet_events unset)", async () => {
    const filter = await blockAllFilter();
    const sink = new Sink();
    sink.wanted = false;
    const fwd = new EventForwarder(filter.events(), sink, { intervalMs: 30 });
    fwd.start();
    await sleep(20);
    filter.sendPacket("nf-ev", "192.0.2.1", { port: 22 });
    await sleep(150);
    expect(sink.batches).toEqual([]);
    expect(fwd.dropped).toBe(0);
    sink.wanted = true; // asked from now on: only events from now on are forwarded
    filter.sendPacket("nf-ev", "192.0.2.9", { port: 80 });
    await until(() => sink.batches.length > 0);
    expect(sink.batches.flat().map((e) => e.dst)).toEqual(["192.0.2.9"]);
    fwd.stop();
    await filter.close();
  });

  it("bounds its buffer: beyond maxBatch events per interval the oldest are dropped and counted", async () => {
    const filter = await blockAllFilter();
    const sink = new Sink();
    const fwd = new EventForwarder(filter.events(), sink, { intervalMs: 400, maxBatch: 3 });
    fwd.start();
    await sleep(20);
    for (let i = 1; i <= 5; i++) filter.sendPacket("nf-ev", `192.0.2.${i}`, { port: 1000 + i });
    await until(() => sink.batches.length > 0);
    expect(sink.batches[0]!.map((e) => e.dst)).toEqual(["192.0.2.3", "192.0.2.4", "192.0.2.5"]);
    expect(fwd.dropped).toBe(2);
    fwd.stop();
    await filter.close();
  });
});
