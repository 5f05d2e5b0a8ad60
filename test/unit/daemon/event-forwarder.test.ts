import { describe, expect, it } from "vitest";
import { EventForwarder } from "../../../daemon/src/event-forwarder.js";
import { FakeFilter } from "../../../daemon/src/datapath/fake-filter.js";
import type { PacketEvent } from "@netfence/proto/control";
import { Verdict } from "@netfence/proto/control";

describe("EventForwarder", () => {
  it("batches kernel events to the control plane and counts what it could not deliver", async () => {
    const filter = new FakeFilter();
    await filter.attach(
      { id: "nf-ev", slot: 1, target: { kind: "cgroup", path: "/x" }, dns: { ipv4: null, ipv6: null, port: 0 } },
      { mode: "block-all", audit: false, entries: [] },
    );
    const batches: PacketEvent[][] = [];
    let up = true;
    const fwd = new EventForwarder(filter.events(), (b) => (up ? (batches.push([...b]), true) : false), 50);
    fwd.start();
    await new Promise((r) => setTimeout(r, 20));
    filter.sendPacket("nf-ev", "192.0.2.1", { port: 22 });
    filter.sendPacket("nf-ev", "192.0.2.2", { port: 23 });
    const deadline = Date.now() + 5000;
    while (batches.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(batches).toHaveLength(1);
    expect(batches[0]!.map((e) => [e.attachmentId, e.dst, e.dstPort, e.verdict])).toEqual([
      ["nf-ev", "192.0.2.1", 22, Verdict.BLOCKED],
      ["nf-ev", "192.0.2.2", 23, Verdict.BLOCKED],
    ]);
    up = false;
    filter.sendPacket("nf-ev", "192.0.2.3");
    while (fwd.dropped === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(fwd.dropped).toBe(1);
    fwd.stop();
    await filter.close();
  });
});
