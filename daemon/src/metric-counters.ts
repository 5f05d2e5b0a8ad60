import { Counter, Histogram, Registry } from "prom-client";
import { TAMPER_KINDS } from "./datapath/filter.js";

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

  /** Hook: a DNS-side event (DnsEventReporter's onEvent). */
  dnsEvent(reason: string): void {
    this.dnsEvents.inc({ reason });
  }
}
