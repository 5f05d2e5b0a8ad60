import { describe, expect, it } from "vitest";
import { toBinary, fromBinary } from "@bufbuild/protobuf";
import { PacketEventSchema } from "@netfence/proto/control";
import { packetEventToWire } from "../../../daemon/src/rpc/packet-event.js";
import { kernelEvent } from "../../../daemon/src/datapath/kernel-event.js";
import type { RawEvent } from "../../../daemon/src/datapath/wire-decode.js";
import { REASONS } from "../../../daemon/src/datapath/wire-format.js";
import { EventFanout } from "../../../daemon/src/datapath/event-fanout.js";
import type { KernelPacketEvent } from "../../../daemon/src/datapath/filter.js";
import { withOwnerNames } from "../../../daemon/src/attachments/owner-events.js";
import { BlockedOwners } from "../../../daemon/src/attachments/blocked-owners.js";
import { OwnerNames } from "../../../daemon/src/policy/principals.js";
import { eventLine } from "../../../cli/src/commands/events.js";

const base: KernelPacketEvent = {
  timeMs: 1_700_000_000_000, slot: 1, attachmentId: "nf-1", family: 4, protocol: 6, src: "10.0.0.2", dst: "127.0.0.1",
  srcPort: 40000, dstPort: 6379, verdict: "blocked", reason: "not-in-allowlist", rule: null, suppressed: 0,
};
const zero = new Uint8Array(16);
const raw = (uid: number, gid: number): RawEvent & { uid: number; gid: number } => ({
  tsNs: 5_000_000n, suppressed: 0n, slot: 3, sport: 40000, dport: 6379, family: 4, proto: 6, verdict: 2,
  reason: REASONS.indexOf("not-in-allowlist"), rulePrefixLen: 255, saddr: zero, daddr: zero, ruleAddr: zero, uid, gid,
});

describe("events carry the socket owner (issue 15)", () => {
  it("kernel event: uid/gid, NF_OWNER_UNKNOWN (0xffffffff) as unknown", () => {
    expect(kernelEvent(raw(1000, 100), "a")).toMatchObject({ uid: 1000, gid: 100 });
    expect(kernelEvent(raw(0, 0), "a")).toMatchObject({ uid: 0, gid: 0 }); // root is an owner, not "unknown"
    expect(kernelEvent(raw(0xffffffff, 0xffffffff), "a")).toMatchObject({ uid: null, gid: null });
  });

  it("PacketEvent: uid (14) set only when known, user (15); survives the binary encoding", () => {
    const w = packetEventToWire({ ...base, uid: 0, user: "root" });
    const back = fromBinary(PacketEventSchema, toBinary(PacketEventSchema, w));
    expect([back.uid, back.user]).toEqual([0, "root"]);
    const none = fromBinary(PacketEventSchema, toBinary(PacketEventSchema, packetEventToWire(base)));
    expect([none.uid, none.user]).toEqual([undefined, ""]);
    expect(eventLine(back)).toContain(" uid=0(root)");
    expect(eventLine(none)).not.toContain("uid=");
  });

  it("names owners from the host's NSS, keeps order, and stops without waiting for the next event", async () => {
    const fanout = new EventFanout<KernelPacketEvent>();
    const it = withOwnerNames(fanout.subscribe(), new OwnerNames())[Symbol.asyncIterator]();
    fanout.publish({ ...base, uid: 65534 });
    fanout.publish({ ...base, uid: 3_999_999_999 }); // no such user
    fanout.publish(base);
    const got = [await it.next(), await it.next(), await it.next()].map((r) => (r.done ? null : r.value.user));
    expect(got).toEqual(["nobody", null, undefined]);
    const pending = it.next();
    await it.return!();
    expect((await pending).done).toBe(true);
  });
});

describe("BlockedOwners: blocked attempts per owner, bounded", () => {
  it("counts blocked and audited (1 + suppressed), ignores allowed, names from the events", () => {
    const b = new BlockedOwners();
    b.note({ ...base, uid: 33, user: "web", suppressed: 4 });
    b.note({ ...base, uid: 33, verdict: "audit", timeMs: base.timeMs + 5 });
    b.note({ ...base, uid: 33, verdict: "allowed" });
    b.note({ ...base, uid: 1000 });
    b.note(base); // no owner known
    b.note({ ...base, attachmentId: "nf-2", uid: 7 });
    expect(b.forAttachment("nf-1")).toEqual([
      { uid: 33, kind: "uid", user: "web", blocked: 5, audited: 1, lastMs: base.timeMs + 5 },
      { uid: 1000, kind: "uid", user: null, blocked: 1, audited: 0, lastMs: base.timeMs },
      { uid: null, kind: "unknown", user: null, blocked: 1, audited: 0, lastMs: base.timeMs },
    ]);
    b.forget("nf-1");
    expect(b.forAttachment("nf-1")).toEqual([]);
    expect(b.forAttachment("nf-2")).toHaveLength(1);
  });

  it("beyond the bound, new owners count under 'other'; known ones keep counting", () => {
    const b = new BlockedOwners(3);
    for (const uid of [1, 2, 3, 4, 5, 1]) b.note({ ...base, uid });
    const rows = b.forAttachment("nf-1");
    expect(rows.map((r) => [r.kind, r.uid, r.blocked])).toEqual([["uid", 1, 2], ["other", null, 2], ["uid", 2, 1], ["uid", 3, 1]]);
  });

  it("countFrom consumes a stream until stopped", async () => {
    const fanout = new EventFanout<KernelPacketEvent>();
    const b = new BlockedOwners();
    const c = b.countFrom(fanout.subscribe());
    fanout.publish({ ...base, uid: 9 });
    await new Promise((r) => setImmediate(r));
    await c.stop();
    fanout.publish({ ...base, uid: 9 });
    expect(b.forAttachment("nf-1")[0]!.blocked).toBe(1);
  });
});
