import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Direction, PacketEventSchema, Verdict, type PacketEvent } from "../../../proto/gen/netfence/v1/control_pb.js";
import type { KernelPacketEvent } from "../datapath/filter.js";

const PROTOCOLS: Record<number, string> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6" };

/** Kernel event → wire PacketEvent. Packets are always sent by the workload (egress from its view). */
export function packetEventToWire(e: KernelPacketEvent): PacketEvent {
  return create(PacketEventSchema, {
    time: timestampFromMs(e.timeMs),
    attachmentId: e.attachmentId ?? "",
    src: e.src,
    dst: e.dst,
    srcPort: e.srcPort,
    dstPort: e.dstPort,
    protocol: PROTOCOLS[e.protocol] ?? String(e.protocol),
    direction: Direction.EGRESS,
    verdict: e.verdict === "audit" ? Verdict.AUDIT : Verdict.BLOCKED,
    reason: e.reason,
    rule: e.rule ?? "",
    suppressed: BigInt(e.suppressed),
  });
}
