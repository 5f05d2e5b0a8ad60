import { create } from "@bufbuild/protobuf";
import {
  AttachmentSchema,
  AttachmentStatsSchema,
  DaemonEventSchema,
  SubscribedSchema,
  UnsubscribeReason,
  type AttachmentStats,
  type ControlCommand,
  type DaemonEvent,
} from "@netfence/proto/control";
import { AttachmentType } from "@netfence/proto/types";
import { dnsModeToWire, policyModeToWire } from "@netfence/proto/modes";
import type { AttachmentStatsView, AttachmentView } from "../attachments/attachment-view.js";
import type { HitsDelta } from "../attachments/hits-tracker.js";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { FilterMode } from "../datapath/filter.js";
import type { DnsModeName } from "../policy/policy.js";

/** Typed daemon values → netfence.v1 DaemonEvent messages (the outbound half of the wire mapping). */

export { dnsModeToWire, policyModeToWire };

function typeToWire(type: AttachmentView["type"]): AttachmentType {
  return type === "interface" ? AttachmentType.TC : AttachmentType.CGROUP;
}

export function syncRequestEvent(daemonId: string, hostname: string, metadata: Record<string, string>, attachments: readonly AttachmentView[]): DaemonEvent {
  return create(DaemonEventSchema, {
    event: {
      case: "sync",
      value: {
        daemonId,
        hostname,
        metadata: { ...metadata },
        attachments: attachments.map((a) => create(AttachmentSchema, {
          id: a.id,
          target: a.target,
          type: typeToWire(a.type),
          mode: policyModeToWire(a.mode),
          dnsMode: dnsModeToWire(a.dnsMode),
          metadata: { ...a.metadata },
        })),
      },
    },
  });
}

export function subscribedEvent(a: AttachmentView): DaemonEvent {
  return create(DaemonEventSchema, {
    event: {
      case: "subscribed",
      value: create(SubscribedSchema, {
        id: a.id,
        target: a.target,
        type: typeToWire(a.type),
        mode: policyModeToWire(a.mode),
        dnsMode: dnsModeToWire(a.dnsMode),
        dnsAddress: a.dnsAddress,
        metadata: { ...a.metadata },
      }),
    },
  });
}

export function unsubscribedEvent(id: string, reason: "removed" | "detached" | "error", error: string | undefined): DaemonEvent {
  const wireReason = reason === "removed" ? UnsubscribeReason.REMOVED
    : reason === "detached" ? UnsubscribeReason.DETACHED
    : UnsubscribeReason.ERROR;
  return create(DaemonEventSchema, { event: { case: "unsubscribed", value: { id, reason: wireReason, error: error ?? "" } } });
}

export function heartbeatEvent(stats: readonly AttachmentStatsView[], hits: ReadonlyMap<string, HitsDelta> = new Map<string, HitsDelta>()): DaemonEvent {
  const wire: AttachmentStats[] = stats.map((s) => create(AttachmentStatsSchema, {
    id: s.id,
    packetsAllowed: s.packetsAllowed,
    packetsBlocked: s.packetsBlocked,
    dnsQueriesAllowed: s.dnsQueriesAllowed,
    dnsQueriesBlocked: s.dnsQueriesBlocked,
    // Extension fields 100-101 (rule hit counts): absent from a Go control plane's view, ignored by it.
    ruleHits: (hits.get(s.id)?.hits ?? []).map((h) => ({
      ruleId: h.ruleId,
      rule: h.rule,
      packets: h.packets,
      ...(h.lastHitMs > 0 ? { lastHit: timestampFromMs(h.lastHitMs) } : {}),
    })),
    ruleHitsOmitted: hits.get(s.id)?.omitted ?? 0,
    packetsAudited: s.packetsAudited,
    eventsLost: s.eventsLost,
  }));
  return create(DaemonEventSchema, { event: { case: "heartbeat", value: { stats: wire } } });
}

/**
 * The CommandResult of `cmd`. Fleet extension: an applied SubscribedAck/BulkUpdate echoes its
 * policy_version (sent once the kernel holds it), so the control plane knows what each runs.
 */
export function commandResultEvent(commandId: string, cmd: ControlCommand, error: string | null, skipped: readonly string[] = []): DaemonEvent {
  const c = cmd.command;
  const policyVersion = error === null && (c.case === "bulkUpdate" || c.case === "subscribedAck") ? c.value.policyVersion : "";
  return create(DaemonEventSchema, {
    event: { case: "commandResult", value: { commandId, attachmentId: cmd.id, applied: error === null, error: error ?? "", skipped: [...skipped], policyVersion } },
  });
}
