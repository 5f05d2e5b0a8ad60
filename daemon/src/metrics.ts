import http from "node:http";
import { Counter, Gauge, type Registry } from "prom-client";
import type { MapUsageSnapshot } from "./map-usage.js";
import { MetricCounters } from "./metric-counters.js";
import type { Logger } from "pino";
import type { AttachmentStatsView } from "./attachments/attachment-view.js";

/**
 * Prometheus metrics. Per-attachment counters are read from the kernel at scrape time (no
 * polling in between); command outcomes and control-plane state are pushed by hooks.
 */
export interface MetricsSources {
  stats(): Promise<readonly AttachmentStatsView[]>;
  attachmentCount(): number;
  queueDepth(): number;
  controlPlaneState(): "disconnected" | "connecting" | "connected" | "none";
  /** Filters restored after someone else removed their pins (optional). */
  integrityRestores?(): number;
  /** Pinned attachments the state store does not account for (kept enforcing). */
  orphans?(): number;
  /** Per attachment: DNS server listening, counts by outcome (optional). */
  dnsStates?(): readonly { id: string; listening: boolean; learned: number; outcomes: Readonly<Record<string, number>> }[];
  /** Map entries against capacity (map-usage.ts: read from the loader, cached ≥ 5 s); absent: not exported. */
  mapUsage?(): Promise<MapUsageSnapshot>;
  /** Packet events the control-plane forwarder dropped (slow or absent stream) since start. */
  eventsForwardDropped?(): number;
}

/**
 * One kernel read of every attachment's counters per scrape, shared by the gauges of that scrape
 * (prom-client collects them concurrently): callers while a read is in flight get that read.
 */
function sharedWhileInFlight<T>(read: () => Promise<T>): () => Promise<T> {
  let inFlight: Promise<T> | null = null;
  return () => (inFlight ??= read().finally(() => (inFlight = null)));
}

/**
 * The gauges, read from `sources` at scrape time, registered with the pushed counters
 * (metric-counters.ts, built first: the parts that push exist before the parts that are read).
 */
export class DaemonMetrics {
  readonly registry: Registry;
  private server: http.Server | null = null;

  constructor(
    sources: MetricsSources,
    private readonly counters: MetricCounters = new MetricCounters(),
  ) {
    this.registry = counters.registry;
    const r = this.registry;
    const stats = sharedWhileInFlight(() => sources.stats());
    const perAttachment = (name: string, help: string, pick: (s: AttachmentStatsView) => bigint): void => {
      new Gauge({
        name,
        help,
        labelNames: ["attachment"],
        registers: [r],
        async collect() {
          this.reset();
          for (const s of await stats()) this.set({ attachment: s.id }, Number(pick(s)));
        },
      });
    };
    perAttachment("netfence_packets_allowed", "Packets allowed per attachment (kernel per-CPU counters summed)", (s) => s.packetsAllowed);
    perAttachment("netfence_packets_blocked", "Packets blocked per attachment", (s) => s.packetsBlocked);
    perAttachment("netfence_dns_queries_allowed", "DNS queries answered per attachment", (s) => s.dnsQueriesAllowed);
    perAttachment("netfence_dns_queries_blocked", "DNS queries refused per attachment", (s) => s.dnsQueriesBlocked);
    perAttachment("netfence_events_lost", "Packet events the kernel dropped per attachment because the ring buffer was full", (s) => s.eventsLost ?? 0n);
    new Counter({
      name: "netfence_events_lost_total",
      help: 'Packet events lost: where="kernel" the ring buffer was full (summed over live attachments; drops when one detaches), where="daemon" after the kernel',
      labelNames: ["where"],
      registers: [r],
      async collect() {
        this.reset();
        let kernel = 0n;
        for (const s of await stats()) kernel += s.eventsLost ?? 0n;
        this.inc({ where: "kernel" }, Number(kernel));
        this.inc({ where: "daemon" }, counters.eventsLostInDaemon);
      },
    });
    if (sources.mapUsage !== undefined) this.mapUsageGauges(sources.mapUsage);
    // --- events (audit mode, ring-buffer loss, forwarding) ---
    perAttachment("netfence_packets_audited", "Packets audit mode let through that the policy would have blocked, per attachment", (s) => s.packetsAudited);
    if (sources.eventsForwardDropped !== undefined) {
      const read = sources.eventsForwardDropped;
      new Gauge({ name: "netfence_events_forward_dropped_total", help: "Packet events not forwarded to the control plane (stream slow or down)", registers: [r], collect() { this.set(read()); } });
    }
    new Gauge({ name: "netfence_attachments", help: "Live attachments", registers: [r], collect() { this.set(sources.attachmentCount()); } });
    new Gauge({ name: "netfence_op_queue_depth", help: "Kernel operations waiting in the manager queue", registers: [r], collect() { this.set(sources.queueDepth()); } });
    new Gauge({
      name: "netfence_control_plane_connected",
      help: "1 when the control-plane stream is up, 0 otherwise (absent without a control plane)",
      registers: [r],
      collect() {
        const s = sources.controlPlaneState();
        if (s !== "none") this.set(s === "connected" ? 1 : 0);
      },
    });
    if (sources.integrityRestores !== undefined) {
      const read = sources.integrityRestores;
      new Gauge({
        name: "netfence_integrity_restores",
        help: "Filters restored since start after their pins were removed by someone else",
        registers: [r],
        collect() {
          this.set(read());
        },
      });
    }
    if (sources.orphans !== undefined) {
      const read = sources.orphans;
      new Gauge({
        name: "netfence_orphan_attachments",
        help: "Pinned attachments the state store does not account for: kept enforcing until `netfenced adopt` or `netfenced detach --orphan`",
        registers: [r],
        collect() {
          this.set(read());
        },
      });
    }
    if (sources.dnsStates !== undefined) {
      const read = sources.dnsStates;
      new Gauge({
        name: "netfence_dns_queries",
        help: "DNS queries per attachment by outcome, cumulative (allowed, refused, refused-type, refused-cname, quota-qps, quota-inflight, quota-learned, servfail, foreign, …)",
        labelNames: ["attachment", "outcome"],
        registers: [r],
        collect() {
          this.reset();
          for (const s of read()) for (const [outcome, n] of Object.entries(s.outcomes)) this.set({ attachment: s.id, outcome }, n);
        },
      });
      new Gauge({
        name: "netfence_dns_server_listening",
        help: "1 when the attachment's DNS server listens; 0 while it cannot (e.g. its port is held by another process; retried every 2 s)",
        labelNames: ["attachment"],
        registers: [r],
        collect() {
          this.reset();
          for (const s of read()) this.set({ attachment: s.id }, s.listening ? 1 : 0);
        },
      });
      new Gauge({
        name: "netfence_dns_learned_addresses",
        help: "Distinct DNS-learned addresses held per attachment (bounded by the learned quota)",
        labelNames: ["attachment"],
        registers: [r],
        collect() {
          this.reset();
          for (const s of read()) this.set({ attachment: s.id }, s.learned);
        },
      });
    }
  }

  private mapUsageGauges(read: () => Promise<MapUsageSnapshot>): void {
    const r = this.registry;
    const rows = (name: string, help: string, pick: (row: MapUsageSnapshot["rows"][number]) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ["table", "family"],
        registers: [r],
        async collect() {
          this.reset();
          for (const row of (await read()).rows) this.set({ table: row.table, family: row.family }, pick(row));
        },
      });
    };
    rows("netfence_map_entries", "Policy entries of the active generations, summed over attachments, per table (exact-small, exact-large, lpm) and family (read at most every 5 s)", (x) => x.entries);
    rows("netfence_map_capacity", "Capacity of those tables, summed over attachments (a large exact table counts once installed)", (x) => x.capacity);
    rows("netfence_map_fill_ratio_max", "The fullest attachment's entries / capacity per table and family (1 = full)", (x) => x.maxFill);
    new Gauge({
      name: "netfence_map_usage_read_seconds",
      help: "How long the last read of the map usage took (one loader request per attachment)",
      registers: [r],
      async collect() {
        this.set((await read()).readMs / 1000);
      },
    });
  }

  /** Hook for ControlPlaneClient's onCommandOutcome. */
  commandOutcome(kind: string, applied: boolean, latencyMs: number): void {
    this.counters.commandOutcome(kind, applied, latencyMs);
  }

  /** Hook: a learned address refused by the rebinding guard or the quota. */
  learnedAddressRefused(reason: string, count = 1): void {
    this.counters.learnedAddressRefused(reason, count);
  }

  /** Hook: a DNS-side event (DnsEventReporter's onEvent). */
  dnsEvent(reason: string): void {
    this.counters.dnsEvent(reason);
  }

  /** Serves /metrics on "ip:port". */
  async listen(address: string, logger: Logger): Promise<void> {
    const idx = address.lastIndexOf(":");
    const host = address.slice(0, idx).replace(/^\[|\]$/g, "");
    const port = Number(address.slice(idx + 1));
    const server = http.createServer((req, res) => {
      if (req.url !== "/metrics") {
        res.writeHead(404).end();
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": this.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    logger.info({ metrics: address }, "metrics listening");
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
