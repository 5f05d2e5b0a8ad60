import {
  UnsubscribeReason as WireUnsubscribeReason,
  type Attachment,
  type AttachmentStats,
  type Subscribed,
  type SyncRequest,
} from "@netfence/proto/control";
import { AttachmentType, type DnsMode as WireDnsMode, type PolicyMode } from "@netfence/proto/types";
import { dnsModeFromWire as dnsModeName, policyModeFromWire } from "@netfence/proto/modes";
import type { AttachmentInfo, AttachmentStatsInfo, DaemonInfo, DnsMode, Mode, UnsubscribeReason } from "./policy-spec.js";

/** netfence.v1 daemon events → plain SDK values. */

export function modeFromWire(mode: PolicyMode): Mode | "unspecified" {
  return policyModeFromWire(mode) ?? "unspecified";
}

export function dnsModeFromWire(mode: WireDnsMode): DnsMode | "unspecified" {
  return dnsModeName(mode) ?? "unspecified";
}

function typeFromWire(type: AttachmentType): AttachmentInfo["type"] {
  return type === AttachmentType.TC ? "interface" : type === AttachmentType.CGROUP ? "cgroup" : "unspecified";
}

export function daemonFromWire(sync: SyncRequest): DaemonInfo {
  return { daemonId: sync.daemonId, hostname: sync.hostname, metadata: { ...sync.metadata } };
}

export function attachmentFromWire(a: Attachment | Subscribed): AttachmentInfo {
  return {
    id: a.id,
    target: a.target,
    type: typeFromWire(a.type),
    mode: modeFromWire(a.mode),
    dnsMode: dnsModeFromWire(a.dnsMode),
    dnsAddress: "dnsAddress" in a ? a.dnsAddress : "",
    metadata: { ...a.metadata },
  };
}

export function statsFromWire(s: AttachmentStats): AttachmentStatsInfo {
  return {
    id: s.id,
    packetsAllowed: s.packetsAllowed,
    packetsBlocked: s.packetsBlocked,
    dnsQueriesAllowed: s.dnsQueriesAllowed,
    dnsQueriesBlocked: s.dnsQueriesBlocked,
    ruleHits: s.ruleHits.map((h) => ({
      ruleId: h.ruleId,
      rule: h.rule,
      packets: h.packets,
      lastHitMs: h.lastHit === undefined ? 0 : Number(h.lastHit.seconds) * 1000 + Math.floor(h.lastHit.nanos / 1e6),
    })),
    ruleHitsOmitted: s.ruleHitsOmitted,
    packetsAudited: s.packetsAudited,
    eventsLost: s.eventsLost,
  };
}

export function reasonFromWire(r: WireUnsubscribeReason): UnsubscribeReason {
  switch (r) {
    case WireUnsubscribeReason.REMOVED: return "removed";
    case WireUnsubscribeReason.DETACHED: return "detached";
    case WireUnsubscribeReason.ERROR: return "error";
    default: return "unspecified";
  }
}
