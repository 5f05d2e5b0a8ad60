import { describe, expect, it } from "vitest";
import { HostAddressGate } from "../../../daemon/src/attachments/host-address-gate.js";

describe("HostAddressGate (issue 13: no netlink dump per second at idle)", () => {
  it("reads the addresses again only after an event, a 30 s sweep, or on every ask while events are not live", () => {
    let t = 0;
    let reads = 0;
    let live = true;
    const gate = new HostAddressGate(() => ++reads, () => live, 30_000, () => t);
    expect(gate.version()).toBe(1); // first ask reads
    for (let i = 0; i < 29; i++) {
      t += 1000;
      expect(gate.version()).toBe(1); // idle: no read
    }
    gate.changed(); // an address event
    t += 1000;
    expect(gate.version()).toBe(2);
    t += 1000;
    expect(gate.version()).toBe(2);
    t += 30_000; // safety sweep
    expect(gate.version()).toBe(3);
    live = false; // monitor down: every ask reads, as before
    expect(gate.version()).toBe(4);
    expect(gate.version()).toBe(5);
  });
});
