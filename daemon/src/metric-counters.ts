import { Counter, Histogram, Registry } from "prom-client";
import { TAMPER_KINDS } from "./datapath/filter.js";

/** DNS event reasons that are quota hits → the quota ("tcp": by the event's rule). */
const QUOTA_OF_EVENT: Readonly<Record<string, string>> = {
  "dns-quota-qps": "qps",
  "dns-quota-inflight": "inflight",
  "dns-quota-learned": "learned",
  "dns-quota-tcp": "tcp",
};

/**
 * The metrics pushed by hooks (command outcomes, learned-address refusals, DNS events). Built
 * before everything else so the parts that push get a finished object; the gauges read at scrape
 * time (metrics.ts) register in the same Registry once their sources exist.
 */
export class MetricCounters {
  readonly registry = new Registry();
  private readonly commands: Counter<"kind" | "outcome">;
  private readonly commandLatency: Histogram<"kind">;
  private readonly learnedRefused: Counter<"reason">;
  private readonly dnsEvents: Counter<"reason">;
  private readonly policyChanges: Counter<"source" | "result">;
  private readonly dnsQueries: Counter<"outcome">;
  private readonly quotaHits: Counter<"quota">;
  /** Events lost in the daemon (after the kernel), for `netfence_events_lost_total{where="daemon"}` (metrics.ts). */
  eventsLostInDaemon = 0;
  private readonly commandPhase: Histogram<"phase">;
  private readonly tamper: Counter<"kind">; // lane M: tamper detection

  constructor() {
    const r = this.registry;
    this.learnedRefused = new Counter({
      name: "netfence_dns_learned_refused_total",
      help: "DNS answer addresses not opened (or removed later) by the rebinding guard or the learned-address quota, by reason",
      labelNames: ["reason"],
      registers: [r],
    });
    this.dnsEvents = new Counter({
      name: "netfence_dns_events_total",
      help: "DNS-side events (quota hits, foreign sources, refused query types, rebinding guard), before folding",
      labelNames: ["reason"],
      registers: [r],
    });
    this.tamper = new Counter({
      name: "netfence_tamper_detected_total",
      help: "Tampering with an attachment's kernel objects detected (and then restored), by kind",
      labelNames: ["kind"],
      registers: [r],
    });
    for (const kind of TAMPER_KINDS) this.tamper.inc({ kind }, 0);
    this.commands = new Counter({ name: "netfence_commands_total", help: "Control-plane commands by kind and outcome", labelNames: ["kind", "outcome"], registers: [r] });
    this.commandLatency = new Histogram({
      name: "netfence_command_apply_seconds",
      help: "Time to apply a control-plane command",
      labelNames: ["kind"],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
      registers: [r],
    });
    this.policyChanges = new Counter({
      name: "netfence_policy_changes_total",
      help: "Policy changes recorded in the audit trail (`netfenced history`), by source (control-plane, cli, default-policy, dns-learned, daemon) and result (applied, rejected, unchanged); DNS-learned changes count once per attachment per minute",
      labelNames: ["source", "result"],
      registers: [r],
    });
    this.dnsQueries = new Counter({
      name: "netfence_dns_queries_total",
      help: "DNS queries of every attachment by outcome (dns/dns-outcomes.ts: allowed, cached, refused, refused-type, refused-cname, quota-*, servfail, formerr, notimp, dropped, foreign, tcp-rejected; addresses-refused and records-trimmed count records)",
      labelNames: ["outcome"],
      registers: [r],
    });
    this.quotaHits = new Counter({
      name: "netfence_dns_quota_hits_total",
      help: "DNS quota hits by quota: qps, inflight, learned, tcp-connections, tcp-per-source (queries or connections refused), answer-records (records trimmed from answers)",
      labelNames: ["quota"],
      registers: [r],
    });
    this.commandPhase = new Histogram({
      name: "netfence_command_apply_phase_seconds",
      help: "Per command that reached the kernel (control plane and local API): time to plan it (phase=plan) and to write it to the kernel maps (phase=kernel), without queueing",
      labelNames: ["phase"],
      buckets: [0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
      registers: [r],
    });
  }

  /** Hook: an entry of the audit trail (history/policy-history.ts). */
  policyChange(source: string, result: string): void {
    this.policyChanges.inc({ source, result });
  }

  /** Hook: a command that reached the kernel (command-applier.ts), planning and kernel time. */
  commandPhases(planMs: number, kernelMs: number): void {
    this.commandPhase.observe({ phase: "plan" }, planMs / 1000);
    this.commandPhase.observe({ phase: "kernel" }, kernelMs / 1000);
  }

  /** Hook for ControlPlaneClient's onCommandOutcome. */
  commandOutcome(kind: string, applied: boolean, latencyMs: number): void {
    this.commands.inc({ kind, outcome: applied ? "applied" : "rejected" });
    this.commandLatency.observe({ kind }, latencyMs / 1000);
  }

  /** Hook: a learned address refused by the rebinding guard or the quota. */
  learnedAddressRefused(reason: string, count = 1): void {
    this.learnedRefused.inc({ reason }, count);
  }

  /** Hook: tampering detected (TamperWatch's onTamper). */
  tamperDetected(kind: string): void {
    this.tamper.inc({ kind });
  }

  /** Hook: a DNS-side event (DnsEventReporter's onEvent); quota events also count as quota hits. */
  dnsEvent(reason: string, rule = ""): void {
    this.dnsEvents.inc({ reason });
    const quota = QUOTA_OF_EVENT[reason];
    if (quota !== undefined) this.quotaHits.inc({ quota: quota === "tcp" ? (rule === "tcp-per-source" ? "tcp-per-source" : "tcp-connections") : quota });
  }

  /** Hook: every DNS outcome counted by any attachment's server (dns-outcomes.ts). */
  dnsOutcome(outcome: string, n: number): void {
    this.dnsQueries.inc({ outcome }, n);
    if (outcome === "records-trimmed") this.quotaHits.inc({ quota: "answer-records" }, n);
  }

  /**
   * Hook for events lost after the kernel (a consumer too slow, a queue full): lane O4's event
   * path calls it; the kernel's ring-buffer losses are read from the per-attachment counters.
   */
  eventLost(n = 1): void {
    this.eventsLostInDaemon += n;
  }
}
