import type pino from "pino";
import type { ControlPlaneHooks } from "@netfence/control-plane-sdk";
import type { DaemonHandle } from "@netfence/control-plane-sdk";
import type { AttachmentInfo, AttachmentStatsInfo, CommandOutcome, DnsDecision, DnsQuery, DomainSpec, PolicySpec } from "@netfence/control-plane-sdk";
import { compileDomainRules, matchDomain } from "@netfence/proto/domain-match";
import { canonicalQueryName } from "@netfence/proto/parse";
import type { DnsRuleSet } from "@netfence/proto/domain-match";
import type { DomainRule } from "@netfence/proto/parse";
import { labelsOf, selectPolicy, type PolicyFile } from "./policy-file.js";
import { runWindowed } from "./push-window.js";
import { Verdict, type PacketEvent } from "@netfence/proto/control";

const VERDICTS: Record<number, string> = { [Verdict.BLOCKED]: "blocked", [Verdict.AUDIT]: "would-block", [Verdict.ALLOWED]: "allowed" };

/** BulkUpdates awaiting their CommandResult per daemon (push-window.ts). */
export const PUSH_WINDOW = 32;

export interface PushSummary {
  /** Attachments whose policy changed and got a BulkUpdate. */
  readonly pushed: number;
  readonly applied: number;
  readonly rejected: number;
  /** No CommandResult (timeout, disconnect, or a daemon without the extension). */
  readonly unconfirmed: number;
  readonly unchanged: number;
}

export interface PolicyControllerOptions {
  readonly logStats?: boolean;
  /**
   * A daemon confirmed a policy in the kernel (SubscribedAck or BulkUpdate applied): the version
   * it echoed (PolicySpec.version; null when the policy had none or the daemon does not echo).
   */
  readonly onApplied?: (daemon: DaemonHandle, attachmentId: string, policyVersion: string | null) => void;
}

/**
 * netfence-cp's brain, shared by both modes: answers SubscribedAck from the policy set (the YAML
 * file, or in fleet mode the policies in PostgreSQL turned into the same PolicyFile), reconciles
 * every attachment of a (re)synced daemon, and on reload pushes an atomic BulkUpdate (mode + CIDRs
 * + DNS, and in fleet mode the policy version) to exactly the attachments whose selected policy
 * changed, at most PUSH_WINDOW in flight per daemon.
 */
export class PolicyController implements ControlPlaneHooks {
  private file: PolicyFile;
  /** daemonId → attachmentId → canonical JSON of the policy last sent. */
  private readonly sent = new Map<string, Map<string, string>>();
  private readonly lastStats = new Map<string, AttachmentStatsInfo>();

  constructor(file: PolicyFile, private readonly log: pino.Logger, private readonly opts: PolicyControllerOptions = {}) {
    this.file = file;
  }

  policyFile(): PolicyFile {
    return this.file;
  }

  /** Latest heartbeat counters per attachment id. */
  stats(): ReadonlyMap<string, AttachmentStatsInfo> {
    return this.lastStats;
  }

  onSubscribed(daemon: DaemonHandle, attachment: AttachmentInfo): PolicySpec {
    const { rule, policy } = selectPolicy(this.file, labelsOf(daemon.info.metadata, attachment.metadata));
    this.remember(daemon.daemonId, attachment.id, policy);
    this.log.info({ daemonId: daemon.daemonId, attachmentId: attachment.id, rule: rule ?? "(defaults)", mode: policy.mode }, "initial policy");
    return policy;
  }

  onSubscribedResult(daemon: DaemonHandle, attachmentId: string, outcome: CommandOutcome): void {
    if (outcome.applied) this.opts.onApplied?.(daemon, attachmentId, outcome.policyVersion ?? null);
    else this.sent.get(daemon.daemonId)?.delete(attachmentId);
  }

  async onDaemonSynced(daemon: DaemonHandle): Promise<void> {
    // A daemon that reconnects may have missed reloads while it was away: reconcile all of it.
    this.sent.delete(daemon.daemonId);
    const summary = await this.pushChanged([daemon]);
    this.log.info({ daemonId: daemon.daemonId, attachments: daemon.attachments.size, ...summary }, "daemon reconciled");
  }

  onUnsubscribed(daemon: DaemonHandle, attachmentId: string, reason: string): void {
    this.sent.get(daemon.daemonId)?.delete(attachmentId);
    this.lastStats.delete(attachmentId);
    this.log.info({ daemonId: daemon.daemonId, attachmentId, reason }, "attachment gone");
  }

  onHeartbeat(daemon: DaemonHandle, stats: readonly AttachmentStatsInfo[]): void {
    for (const s of stats) {
      const prev = this.lastStats.get(s.id);
      this.lastStats.set(s.id, s);
      const changed = !prev || prev.packetsAllowed !== s.packetsAllowed || prev.packetsBlocked !== s.packetsBlocked ||
        prev.dnsQueriesAllowed !== s.dnsQueriesAllowed || prev.dnsQueriesBlocked !== s.dnsQueriesBlocked;
      if (this.opts.logStats && changed) {
        this.log.info({
          daemonId: daemon.daemonId,
          attachmentId: s.id,
          packetsAllowed: Number(s.packetsAllowed),
          packetsBlocked: Number(s.packetsBlocked),
          dnsQueriesAllowed: Number(s.dnsQueriesAllowed),
          dnsQueriesBlocked: Number(s.dnsQueriesBlocked),
        }, "counters");
      }
    }
    this.log.debug({ daemonId: daemon.daemonId, attachments: stats.length }, "heartbeat");
  }

  /** Packet events (only sent when netfence-cp asked: --log-events): one log line each. */
  onPacketEvents(daemon: DaemonHandle, events: readonly PacketEvent[]): void {
    for (const e of events) {
      this.log.info({
        daemonId: daemon.daemonId, attachmentId: e.attachmentId, verdict: VERDICTS[e.verdict] ?? "unspecified", protocol: e.protocol,
        src: e.src, srcPort: e.srcPort, dst: e.dst, dstPort: e.dstPort, reason: e.reason, rule: e.rule || undefined,
        suppressed: Number(e.suppressed), metadata: e.metadata, uid: e.uid, user: e.user || undefined,
      }, "packet event");
    }
  }

  /**
   * DNS proxy mode: a name listed in the rule's `dns.answers` is answered with those addresses;
   * otherwise the rule's allow/deny domains decide, allowlist-style (no matching allow → refused).
   * Allowed answers are added to the attachment's IP filter.
   */
  onQueryDns(query: DnsQuery, daemon: DaemonHandle | undefined): DnsDecision {
    const attachment = daemon?.attachments.get(query.attachmentId);
    if (daemon === undefined || attachment === undefined) {
      this.log.warn({ attachmentId: query.attachmentId, domain: query.domain }, "QueryDns for an unknown attachment refused");
      return { allow: false };
    }
    const { rule, policy, answers } = selectPolicy(this.file, labelsOf(daemon.info.metadata, attachment.metadata));
    const name = canonicalQueryName(query.domain);
    const own = answers.get(name);
    let decision: DnsDecision;
    if (own !== undefined) decision = { allow: true, addToFilter: true, ips: own, ttlSeconds: 60 };
    else if (matchDomain(compileDomainRules(dnsPolicyOf(policy)), name) === "allow") decision = { allow: true, addToFilter: true };
    else decision = { allow: false };
    this.log.debug({ daemonId: daemon.daemonId, attachmentId: query.attachmentId, domain: name, type: query.queryType, rule: rule ?? "(defaults)", allow: decision.allow }, "QueryDns");
    return decision;
  }

  onDaemonDisconnected(daemon: DaemonHandle, reason: string): void {
    this.sent.delete(daemon.daemonId);
    this.log.warn({ daemonId: daemon.daemonId, reason }, "daemon disconnected");
  }

  /** Switches to a new policy file and pushes BulkUpdates where the selected policy changed. */
  async reload(file: PolicyFile, daemons: readonly DaemonHandle[]): Promise<PushSummary> {
    this.file = file;
    return this.pushChanged(daemons);
  }

  private async pushChanged(daemons: readonly DaemonHandle[]): Promise<PushSummary> {
    let unchanged = 0;
    const pushes: Array<Promise<"applied" | "rejected" | "unconfirmed">> = [];
    for (const daemon of daemons) {
      if (!daemon.connected) continue;
      const confirmed: Array<() => Promise<"applied" | "rejected" | "unconfirmed">> = [];
      for (const attachment of daemon.attachments.values()) {
        const { rule, policy } = selectPolicy(this.file, labelsOf(daemon.info.metadata, attachment.metadata));
        const canonical = JSON.stringify(policy);
        if (this.sent.get(daemon.daemonId)?.get(attachment.id) === canonical) {
          unchanged++;
          continue;
        }
        this.remember(daemon.daemonId, attachment.id, policy);
        const log = { daemonId: daemon.daemonId, attachmentId: attachment.id, rule: rule ?? "(defaults)" };
        if (daemon.confirmsCommands === false) {
          // A daemon without the CommandResult extension (Go original): send and move on.
          daemon.post(attachment.id, { kind: "bulk-update", policy });
          this.log.info(log, "BulkUpdate sent (daemon does not confirm commands)");
          pushes.push(Promise.resolve("unconfirmed"));
          continue;
        }
        confirmed.push(() => daemon.bulkUpdate(attachment.id, policy).then(
          (outcome) => {
            if (outcome.applied) {
              this.log.info(log, "BulkUpdate applied");
              this.opts.onApplied?.(daemon, attachment.id, outcome.policyVersion ?? null);
              return "applied" as const;
            }
            this.log.error({ ...log, err: outcome.error }, "BulkUpdate rejected by the daemon");
            this.sent.get(daemon.daemonId)?.delete(attachment.id);
            return "rejected" as const;
          },
          (err: unknown) => {
            this.log.warn({ ...log, err: err instanceof Error ? err.message : String(err) }, "BulkUpdate not confirmed");
            return "unconfirmed" as const;
          },
        ));
      }
      // In flight per daemon at most PUSH_WINDOW (push-window.ts), the daemons in parallel.
      const outcomes = runWindowed(confirmed, PUSH_WINDOW);
      confirmed.forEach((_, i) => pushes.push(outcomes.then((o) => o[i]!)));
    }
    const results = await Promise.all(pushes);
    return {
      pushed: pushes.length,
      applied: results.filter((r) => r === "applied").length,
      rejected: results.filter((r) => r === "rejected").length,
      unconfirmed: results.filter((r) => r === "unconfirmed").length,
      unchanged,
    };
  }

  private remember(daemonId: string, attachmentId: string, policy: PolicySpec): void {
    let m = this.sent.get(daemonId);
    if (!m) this.sent.set(daemonId, (m = new Map()));
    m.set(attachmentId, JSON.stringify(policy));
  }
}

const dnsPolicies = new WeakMap<PolicySpec, DnsRuleSet>();

/** The domain rules of a spec, built once per (immutable) spec so rule compilation is cached too. */
function dnsPolicyOf(policy: PolicySpec): DnsRuleSet {
  let p = dnsPolicies.get(policy);
  if (p === undefined) {
    const rule = (d: string | DomainSpec): DomainRule => {
      if (typeof d !== "string") return { domain: d.domain, includeSubdomains: d.includeSubdomains ?? false };
      return d.startsWith("*.") ? { domain: d.slice(2), includeSubdomains: true } : { domain: d, includeSubdomains: false };
    };
    p = {
      mode: policy.dns?.mode ?? "disabled",
      allowDomains: (policy.dns?.allow ?? []).map(rule),
      denyDomains: (policy.dns?.deny ?? []).map(rule),
    };
    dnsPolicies.set(policy, p);
  }
  return p;
}
