import { formatAddr, formatCidr } from "@netfence/proto/parse";
import type { KernelPacketEvent } from "./filter.js";
import { NO_RULE, OWNER_UNKNOWN, REASONS } from "./wire-format.js";
import type { RawEvent } from "./wire-decode.js";

/**
 * A ring-buffer event as the kernel wrote it (wire-format.ts RawEvent) → KernelPacketEvent.
 * Family 0 is an L2 frame dropped before any IP parsing: its addresses are MACs, dstPort the
 * ethertype, and no rule decided it.
 */
export function kernelEvent(raw: RawEvent, attachmentId: string | null): KernelPacketEvent {
  const fam = raw.family;
  const rule =
    raw.rulePrefixLen === NO_RULE || fam === 0
      ? null
      : formatCidr({ family: fam, addr: raw.ruleAddr.subarray(0, fam === 4 ? 4 : 16), prefixLen: raw.rulePrefixLen });
  return {
    timeMs: Number(raw.tsNs / 1_000_000n),
    slot: raw.slot,
    attachmentId,
    family: fam,
    protocol: raw.proto,
    src: fam === 0 ? formatMac(raw.saddr) : formatAddr(fam, raw.saddr),
    dst: fam === 0 ? formatMac(raw.daddr) : formatAddr(fam, raw.daddr),
    srcPort: raw.sport,
    dstPort: raw.dport,
    verdict: raw.verdict === 3 ? "audit" : raw.verdict === 1 ? "allowed" : "blocked",
    reason: REASONS[raw.reason] ?? `reason-${raw.reason}`,
    rule,
    suppressed: Number(raw.suppressed),
    uid: raw.uid === OWNER_UNKNOWN ? null : raw.uid,
    gid: raw.gid === OWNER_UNKNOWN ? null : raw.gid,
  };
}

function formatMac(b: Uint8Array): string {
  return Array.from(b.subarray(0, 6), (x) => x.toString(16).padStart(2, "0")).join(":");
}
