import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Direction, PacketEventSchema, Verdict, type PacketEvent } from "@netfence/proto/control";
import type { KernelPacketEvent } from "../datapath/filter.js";

const VERDICTS = { blocked: Verdict.BLOCKED, audit: Verdict.AUDIT, allowed: Verdict.ALLOWED } as const;
const PROTOCOLS: Record<number, string> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6" };

/** IP events: the protocol's name or number; L2 frames (family 0): "arp" or "ether-0x88b5". */
function protocolName(e: KernelPacketEvent): string {
  if (e.family === 0) return e.dstPort === 0x0806 ? "arp" : `ether-0x${e.dstPort.toString(16).padStart(4, "0")}`;
  return PROTOCOLS[e.protocol] ?? String(e.protocol);
}

/**
 * Kernel event → wire PacketEvent. Packets are always sent by the workload (egress from its view).
 * `metadata`: the attachment's (PacketEvent.metadata, extension 13), when it is still attached.
 * The owner (issue 15): uid (14, unset = unknown) and its user name (15).
 */
export function packetEventToWire(e: KernelPacketEvent, metadata?: Readonly<Record<string, string>>): PacketEvent {
  return create(PacketEventSchema, {
    time: timestampFromMs(e.timeMs),
    attachmentId: e.attachmentId ?? "",
    src: e.src,
    dst: e.dst,
    srcPort: e.srcPort,
    dstPort: e.dstPort,
    protocol: protocolName(e),
    direction: Direction.EGRESS,
    verdict: VERDICTS[e.verdict],
    reason: e.reason,
    rule: e.rule ?? "",
    suppressed: BigInt(e.suppressed),
    metadata: metadata === undefined ? {} : { ...metadata },
    ...(e.uid != null ? { uid: e.uid } : {}),
    user: e.user ?? "",
  });
}
