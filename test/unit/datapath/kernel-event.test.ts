import { describe, expect, it } from "vitest";
import { kernelEvent } from "../../../daemon/src/datapath/kernel-event.js";
import type { RawEvent } from "../../../daemon/src/datapath/wire-decode.js";
import { NO_RULE, REASONS } from "../../../daemon/src/datapath/wire-format.js";

const addr = (...b: number[]) => Uint8Array.from([...b, ...new Array<number>(16 - b.length).fill(0)]);

function raw(verdict: number, reason: string, rule = true): RawEvent {
  return {
    tsNs: 5_000_000n, suppressed: 0n, slot: 3, sport: 40000, dport: 443, family: 4, proto: 6, verdict,
    reason: REASONS.indexOf(reason), rulePrefixLen: rule ? 32 : NO_RULE,
    saddr: addr(10, 0, 0, 2), daddr: addr(192, 0, 2, 7), ruleAddr: addr(192, 0, 2, 7),
  };
}

describe("kernel events → KernelPacketEvent", () => {
  it("maps the kernel's verdicts: 1 allowed (an allowed flow), 2 blocked, 3 audit", () => {
    expect(kernelEvent(raw(1, "allow-cidr"), "a")).toMatchObject({ verdict: "allowed", reason: "allow-cidr", rule: "192.0.2.7/32", src: "10.0.0.2", dst: "192.0.2.7", srcPort: 40000, dstPort: 443 });
    expect(kernelEvent(raw(2, "not-in-allowlist", false), "a")).toMatchObject({ verdict: "blocked", rule: null });
    expect(kernelEvent(raw(3, "not-in-allowlist", false), "a")).toMatchObject({ verdict: "audit" });
  });
});
