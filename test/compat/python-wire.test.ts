import { afterEach, describe, expect, it } from "vitest";
import pino from "pino";
import { ControlPlaneClient } from "../../daemon/src/control-plane/connection.js";
import { formatCidr } from "@netfence/proto/parse";
import { FakeHost } from "../unit/control-plane/helpers/fake-host.js";
import { PythonControlPlane } from "./python-control-plane.js";

// Wire compatibility: our daemon-side client against a control plane written with Python
// grpcio from the .proto files alone (no shared code, a different gRPC stack).

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function setup(opts: Parameters<typeof PythonControlPlane.start>[0], subscribeAckTimeoutMs = 5000) {
  const py = await PythonControlPlane.start(opts);
  const host = new FakeHost();
  host.add("att-1", { tenant: "acme" });
  const client = new ControlPlaneClient({
    url: `127.0.0.1:${py.port}`,
    daemonId: "daemon-py",
    hostname: "host-py",
    metadata: { site: "lab" },
    heartbeatIntervalMs: 100,
    subscribeAckTimeoutMs,
    host,
    logger: pino({ level: "silent" }),
    backoff: { baseMs: 50, capMs: 500 },
  });
  client.start();
  cleanups.push(async () => {
    client.stop();
    await py.stop();
  });
  await py.waitFor(() => py.ofKind("sync").length === 1, "SyncRequest at the Python control plane");
  await py.waitFor(() => client.state() === "connected", "connected");
  return { py, host, client };
}

describe("wire compatibility with a Python grpcio control plane", () => {
  it("syncs, subscribes with the acked policy, applies pushed commands and answers CommandResult only with command_id", async () => {
    const { py, host, client } = await setup({
      ackPolicy: {
        mode: "POLICY_MODE_ALLOWLIST",
        allowCidrs: [{ cidr: "10.0.0.0/8", ttl: "120s" }],
        denyCidrs: [{ cidr: "10.66.0.0/16" }],
        dns: { mode: "DNS_MODE_ALLOWLIST", allowDomains: [{ domain: "pypi.org", includeSubdomains: true }], upstreamServers: ["127.0.0.1:5353"] },
      },
    });
    const sync = py.ofKind("sync")[0]!;
    expect(sync).toMatchObject({ daemonId: "daemon-py", hostname: "host-py", metadata: { site: "lab" } });
    expect(sync["attachments"]).toEqual([
      { id: "att-1", target: "veth-att-1", type: "ATTACHMENT_TYPE_TC", mode: "POLICY_MODE_ALLOWLIST", dnsMode: "DNS_MODE_ALLOWLIST", metadata: { tenant: "acme" } },
    ]);

    const before = Date.now();
    const policy = await client.subscribe(host.add("att-2", { vm: "v2" }));
    expect(py.ofKind("subscribed")[0]).toMatchObject({ id: "att-2", type: "ATTACHMENT_TYPE_TC", dnsAddress: "127.0.0.1:11000", metadata: { vm: "v2" } });
    expect(policy.mode).toBe("allowlist");
    expect(policy.allowCidrs.map((r) => formatCidr(r.cidr))).toEqual(["10.0.0.0/8"]);
    expect(policy.allowCidrs[0]!.expiresAtMs).toBeGreaterThanOrEqual(before + 120_000);
    expect(policy.denyCidrs.map((r) => [formatCidr(r.cidr), r.expiresAtMs])).toEqual([["10.66.0.0/16", null]]);
    expect(policy.dns).toEqual({ mode: "allowlist", allowDomains: [{ domain: "pypi.org", includeSubdomains: true }], denyDomains: [], upstreams: ["127.0.0.1:5353"] });

    // A Go-original style push: no command_id → applied, and no CommandResult on the wire.
    expect(await py.push({ id: "att-1", denyCidr: { cidr: "203.0.113.0/24", ttl: "30s" } })).toBe(1);
    await py.waitFor(() => host.applied.length === 1, "command applied");
    expect(host.applied[0]!.command).toMatchObject({ kind: "deny-cidr" });
    // With command_id (extension field 100): answered.
    await py.push({ id: "att-1", commandId: "py-1", setMode: { mode: "POLICY_MODE_BLOCK_ALL" } });
    await py.push({ id: "att-1", commandId: "py-2", allowCidr: { cidr: "10.0.0.0/40" } });
    await py.push({ id: "att-1", allowDomain: { domain: "" } }); // invalid, no id: silently rejected
    await py.waitFor(() => py.ofKind("commandResult").length === 2, "two CommandResults");
    expect(py.ofKind("commandResult")[0]).toEqual({ commandId: "py-1", attachmentId: "att-1", applied: true });
    expect(py.ofKind("commandResult")[1]).toMatchObject({ commandId: "py-2", attachmentId: "att-1" });
    expect(py.ofKind("commandResult")[1]!["applied"]).toBeUndefined(); // proto3 JSON omits false
    expect(String(py.ofKind("commandResult")[1]!["error"])).toMatch(/prefix length 40 exceeds 32/);
    expect(host.applied.map((a) => a.command.kind)).toEqual(["deny-cidr", "set-mode"]);

    // Heartbeats arrive with uint64 counters.
    await py.waitFor(() => py.ofKind("heartbeat").length >= 1, "heartbeat");
    const stats = (py.ofKind("heartbeat")[0]!["stats"] as Array<Record<string, unknown>>);
    expect(stats[0]).toMatchObject({ id: "att-1", packetsAllowed: "100", packetsBlocked: "7" });

    // The stream is still the first one: nothing above broke it.
    expect(py.ofKind("sync").length).toBe(1);
    expect(py.ofKind("commandResult").length).toBe(2);
    client.unsubscribed("att-2", "detached");
    await py.waitFor(() => py.ofKind("unsubscribed").length === 1, "unsubscribed");
    expect(py.ofKind("unsubscribed")[0]).toEqual({ id: "att-2", reason: "UNSUBSCRIBE_REASON_DETACHED" });
  });

  it("applies a command pushed right after the SubscribedAck, in order, and proxies DNS queries", async () => {
    const { py, host, client } = await setup({
      ackPolicy: { mode: "POLICY_MODE_DENYLIST" },
      pushAfterSubscribe: { allowDomain: { domain: "example.org" } },
      dnsAnswer: { allow: true, addToFilter: true, ips: ["10.1.1.1"], ttlSeconds: 60 },
    });
    const policy = await client.subscribe(host.add("att-3"));
    expect(policy.mode).toBe("denylist");
    await py.waitFor(() => host.applied.length === 1, "follow-up command");
    expect(host.applied[0]).toEqual({ id: "att-3", command: { kind: "allow-domain", rule: { domain: "example.org", includeSubdomains: false } } });
    expect(py.ofKind("commandResult")).toEqual([]);
    expect(await client.queryDns("att-3", "api.example.org", "A")).toEqual({ allow: true, addToFilter: true, ips: ["10.1.1.1"], ttlSeconds: 60 });
    // The question name as asked, with its trailing dot, as the Go original sends it.
    expect(py.dnsQueries).toEqual([{ id: "att-3", domain: "api.example.org.", queryType: "A" }]);
  });

  it("Go-original semantics: UNSPECIFIED is DISABLED, a bad entry is skipped and reported, a BulkUpdate without dns turns DNS off", async () => {
    const { py, host, client } = await setup({
      ackPolicy: { mode: "POLICY_MODE_ALLOWLIST", allowCidrs: [{ cidr: "10.0.0.0/8" }, { cidr: "not-a-cidr" }], dns: { mode: "DNS_MODE_ALLOWLIST", allowDomains: [{ domain: "pypi.org" }] } },
    });
    // The bad CIDR of the SubscribedAck is skipped; the attach gets the rest.
    const policy = await client.subscribe(host.add("att-4"));
    expect(policy.allowCidrs.map((r) => formatCidr(r.cidr))).toEqual(["10.0.0.0/8"]);
    expect(policy.dns.mode).toBe("allowlist");

    await py.push({ id: "att-4", setMode: {} }); // mode omitted = UNSPECIFIED
    await py.push({ id: "att-4", commandId: "bu-1", bulkUpdate: { mode: "POLICY_MODE_DENYLIST", denyCidrs: [{ cidr: "192.0.2.0/24" }, { cidr: "192.0.2.0/33" }] } });
    await py.waitFor(() => py.ofKind("commandResult").length === 1, "CommandResult of the BulkUpdate");
    expect(py.ofKind("commandResult")[0]).toMatchObject({ commandId: "bu-1", attachmentId: "att-4", applied: true });
    expect(py.ofKind("commandResult")[0]!["skipped"]).toEqual([expect.stringMatching(/^bulk_update\.deny_cidrs\[1\]\.cidr: /)]);
    await py.waitFor(() => host.applied.length === 2, "both commands applied");
    expect(host.applied[0]!.command).toEqual({ kind: "set-mode", mode: "disabled", audit: null });
    const bulk = host.applied[1]!.command;
    expect(bulk.kind === "bulk-update" && [bulk.mode, bulk.denyCidrs.map((r) => formatCidr(r.cidr)), bulk.dns]).toEqual([
      "denylist", ["192.0.2.0/24"], { mode: "disabled", allowDomains: [], denyDomains: [], upstreams: [] },
    ]);
  });

  it("subscribe_ack_timeout 0: the attach does not wait; the SubscribedAck applies when it comes", async () => {
    const { py, host, client } = await setup({ noAck: true }, 0);
    const policy = await client.subscribe(host.add("att-5"));
    expect(policy.mode).toBe("disabled"); // the local default (no initialPolicy given here)
    await py.waitFor(() => py.ofKind("subscribed").length === 1, "Subscribed");
    expect(host.applied).toEqual([]);
    await py.push({ id: "att-5", subscribedAck: { mode: "POLICY_MODE_BLOCK_ALL" } });
    await py.waitFor(() => host.applied.length === 1, "late SubscribedAck applied");
    expect(host.applied[0]).toMatchObject({ id: "att-5", command: { kind: "bulk-update", mode: "block-all" } });
    expect(py.ofKind("commandResult")).toEqual([]);
  });
});
