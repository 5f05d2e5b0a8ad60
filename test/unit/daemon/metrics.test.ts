import { describe, expect, it } from "vitest";
import { DaemonMetrics } from "../../../daemon/src/metrics.js";
import { MetricCounters } from "../../../daemon/src/metric-counters.js";
import { MapUsage } from "../../../daemon/src/map-usage.js";
import { silentLogger } from "./fakes.js";

describe("DaemonMetrics", () => {
  it("exposes per-attachment counters read at scrape time, and command outcomes", async () => {
    let blocked = 3n;
    let reads = 0;
    const m = new DaemonMetrics({
      stats: async () => (reads++, [{ id: "nf-a", packetsAllowed: 10n, packetsBlocked: blocked, packetsAudited: 4n, eventsLost: 5n, dnsQueriesAllowed: 2n, dnsQueriesBlocked: 1n }]),
      attachmentCount: () => 1,
      queueDepth: () => 0,
      controlPlaneState: () => "connected",
      integrityRestores: () => 2,
      eventsForwardDropped: () => 6,
    });
    m.commandOutcome("allow-cidr", true, 2);
    m.commandOutcome("allow-cidr", false, 1);
    let text = await m.registry.metrics();
    expect(text).toContain('netfence_packets_blocked{attachment="nf-a"} 3');
    expect(text).toContain('netfence_packets_allowed{attachment="nf-a"} 10');
    expect(text).toContain("netfence_attachments 1");
    expect(text).toContain("netfence_control_plane_connected 1");
    expect(text).toContain("netfence_integrity_restores 2");
    expect(text).toContain('netfence_packets_audited{attachment="nf-a"} 4');
    expect(text).toContain('netfence_events_lost{attachment="nf-a"} 5');
    expect(text).toContain("netfence_events_forward_dropped_total 6");
    expect(text).toContain('netfence_commands_total{kind="allow-cidr",outcome="applied"} 1');
    expect(text).toContain('netfence_commands_total{kind="allow-cidr",outcome="rejected"} 1');
    expect(reads).toBe(1); // one kernel read per scrape, whatever the number of per-attachment series
    blocked = 7n;
    text = await m.registry.metrics();
    expect(text).toContain('netfence_packets_blocked{attachment="nf-a"} 7');

    await m.listen("127.0.0.1:0", silentLogger);
    await m.close();
  });
});

describe("map usage (MapUsage)", () => {
  const fam = (smallCount: number, smallCap: number, largeCount = 0, largeCap = 0, lpmCount = 0) => ({
    smallCap, smallCount, largeCap, largeCount, usesLarge: largeCap > 0, lpmCount, lpmHostCount: 0, otherLargeCap: 0,
  });

  it("sums entries and capacity per table and family, keeps the fullest attachment's ratio, and reads at most every 5 s", async () => {
    let now = 1_000_000;
    let reads = 0;
    const tables: Record<string, ReturnType<typeof fam>> = { "nf-a": fam(10, 64, 0, 0, 3), "nf-b": fam(60, 64, 900, 1024, 1) };
    const usage = new MapUsage(
      {
        ids: () => ["nf-a", "nf-b", "nf-gone"],
        tables: async (id) => {
          reads++;
          const t = tables[id];
          if (t === undefined) throw new Error("gone");
          return { v4: t, v6: fam(0, 16) };
        },
      },
      5000,
      () => now,
    );
    const m = new DaemonMetrics(
      { stats: async () => [], attachmentCount: () => 2, queueDepth: () => 0, controlPlaneState: () => "none", mapUsage: () => usage.read() },
    );
    let text = await m.registry.metrics();
    expect(text).toContain('netfence_map_entries{table="exact-small",family="ipv4"} 70');
    expect(text).toContain('netfence_map_capacity{table="exact-small",family="ipv4"} 128');
    expect(text).toContain('netfence_map_fill_ratio_max{table="exact-small",family="ipv4"} 0.9375');
    expect(text).toContain('netfence_map_entries{table="exact-large",family="ipv4"} 900');
    expect(text).toContain('netfence_map_capacity{table="lpm",family="ipv4"} 524288');
    expect(text).toContain('netfence_map_entries{table="lpm",family="ipv4"} 4');
    expect(reads).toBe(3); // one read per attachment for the whole scrape
    tables["nf-a"] = fam(20, 64);
    now += 4000;
    text = await m.registry.metrics();
    expect(reads).toBe(3); // cached
    expect(text).toContain('netfence_map_entries{table="exact-small",family="ipv4"} 70');
    now += 1500;
    text = await m.registry.metrics();
    expect(reads).toBe(6);
    expect(text).toContain('netfence_map_entries{table="exact-small",family="ipv4"} 80');
  });

  it("events lost: the kernel counters summed, and the daemon-side hook", async () => {
    const counters = new MetricCounters();
    const m = new DaemonMetrics(
      {
        stats: async () => [
          { id: "nf-a", packetsAllowed: 0n, packetsBlocked: 0n, packetsAudited: 0n, dnsQueriesAllowed: 0n, dnsQueriesBlocked: 0n, eventsLost: 5n },
          { id: "nf-b", packetsAllowed: 0n, packetsBlocked: 0n, packetsAudited: 0n, dnsQueriesAllowed: 0n, dnsQueriesBlocked: 0n, eventsLost: 2n },
        ],
        attachmentCount: () => 2, queueDepth: () => 0, controlPlaneState: () => "none",
      },
      counters,
    );
    counters.eventLost(3);
    counters.dnsOutcome("records-trimmed", 4);
    counters.dnsEvent("dns-quota-tcp", "tcp-per-source");
    counters.policyChange("cli", "applied");
    const text = await m.registry.metrics();
    expect(text).toContain('netfence_events_lost_total{where="kernel"} 7');
    expect(text).toContain('netfence_events_lost_total{where="daemon"} 3');
    expect(text).toContain('netfence_events_lost{attachment="nf-a"} 5');
    expect(text).toContain('netfence_dns_queries_total{outcome="records-trimmed"} 4');
    expect(text).toContain('netfence_dns_quota_hits_total{quota="answer-records"} 4');
    expect(text).toContain('netfence_dns_quota_hits_total{quota="tcp-per-source"} 1');
    expect(text).toContain('netfence_policy_changes_total{source="cli",result="applied"} 1');
  });
});
