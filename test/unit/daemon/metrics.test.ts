import { describe, expect, it } from "vitest";
import { DaemonMetrics } from "../../../daemon/src/metrics.js";
import { silentLogger } from "./fakes.js";

describe("DaemonMetrics", () => {
  it("exposes per-attachment counters read at scrape time, and command outcomes", async () => {
    let blocked = 3n;
    const m = new DaemonMetrics({
      stats: async () => [{ id: "nf-a", packetsAllowed: 10n, packetsBlocked: blocked, packetsAudited: 4n, eventsLost: 5n, dnsQueriesAllowed: 2n, dnsQueriesBlocked: 1n }],
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
    expect(text).toContain('netfence_events_lost_total{attachment="nf-a"} 5');
    expect(text).toContain("netfence_events_forward_dropped_total 6");
    expect(text).toContain('netfence_commands_total{kind="allow-cidr",outcome="applied"} 1');
    expect(text).toContain('netfence_commands_total{kind="allow-cidr",outcome="rejected"} 1');
    blocked = 7n;
    text = await m.registry.metrics();
    expect(text).toContain('netfence_packets_blocked{attachment="nf-a"} 7');

    await m.listen("127.0.0.1:0", silentLogger);
    await m.close();
  });
});
