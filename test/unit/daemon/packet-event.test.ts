import { describe, expect, it } from "vitest";
import { packetEventToWire } from "../../../daemon/src/rpc/packet-event.js";
import type { KernelPacketEvent } from "../../../daemon/src/datapath/filter.js";

const base: KernelPacketEvent = {
  timeMs: 1_700_000_000_000, slot: 1, attachmentId: "nf-1", family: 4, protocol: 6, src: "10.0.0.2", dst: "192.0.2.1",
  srcPort: 40000, dstPort: 443, verdict: "blocked", reason: "not-in-allowlist", rule: null, suppressed: 0,
};

describe("packetEventToWire", () => {
  it("names IP protocols", () => {
    expect(packetEventToWire(base).protocol).toBe("tcp");
    expect(packetEventToWire({ ...base, protocol: 47 }).protocol).toBe("47");
  });

  it("L2 frames (family 0): MAC addresses and the ethertype as the protocol", () => {
    const arp = packetEventToWire({ ...base, family: 0, protocol: 0, src: "02:00:00:00:be:ef", dst: "ff:ff:ff:ff:ff:ff", srcPort: 0, dstPort: 0x0806, reason: "spoofed" });
    expect(arp).toMatchObject({ protocol: "arp", src: "02:00:00:00:be:ef", dst: "ff:ff:ff:ff:ff:ff", reason: "spoofed" });
    expect(packetEventToWire({ ...base, family: 0, protocol: 0, dstPort: 0x88b5, reason: "non-ip" }).protocol).toBe("ether-0x88b5");
  });
});
