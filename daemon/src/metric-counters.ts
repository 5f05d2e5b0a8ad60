import { Counter, Histogram, Registry } from "prom-client";

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
  private readonly commandPhase: Histogram<"phase">;

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

  /** Hook: a DNS-side event (DnsEventReporter's onEvent). */
  dnsEvent(reason: string): void {
    this.dnsEvents.inc({ reason });
  }
}
