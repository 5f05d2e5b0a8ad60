import { afterEach, describe, expect, it } from "vitest";
import pino from "pino";
import { ControlPlaneServer, CommandNotConfirmedError, type ControlPlaneHooks, type DaemonHandle, type PolicySpec } from "../../../sdk/src/index.js";
import type { AttachmentInfo, AttachmentStatsInfo } from "../../../sdk/src/policy-spec.js";
import { ControlPlaneClient, type ControlPlaneClientOptions } from "../../../daemon/src/control-plane/connection.js";
import { formatCidr } from "@netfence/proto/parse";
import { FakeHost } from "../control-plane/helpers/fake-host.js";

const silent = pino({ level: "silent" });
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function waitFor(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Recorded {
  synced: DaemonHandle[];
  subscribed: AttachmentInfo[];
  unsubscribed: Array<[string, string, string]>;
  heartbeats: AttachmentStatsInfo[][];
  disconnected: string[];
}

async function setup(policy: PolicySpec, extra: Partial<ControlPlaneHooks> = {}, clientOpts: Partial<ControlPlaneClientOptions> = {}, authenticate?: (a: string | undefined) => boolean) {
  const rec: Recorded = { synced: [], subscribed: [], unsubscribed: [], heartbeats: [], disconnected: [] };
  const server = new ControlPlaneServer({
    logger: silent,
    commandTimeoutMs: 2000,
    authenticate,
    hooks: {
      onDaemonSynced: (d) => void rec.synced.push(d),
      onSubscribed: (_d, a) => {
        rec.subscribed.push(a);
        return policy;
      },
      onUnsubscribed: (_d, id, reason, error) => void rec.unsubscribed.push([id, reason, error]),
      onHeartbeat: (_d, stats) => void rec.heartbeats.push([...stats]),
      onDaemonDisconnected: (d) => void rec.disconnected.push(d.daemonId),
      ...extra,
    },
  });
  const port = await server.listen("127.0.0.1:0");
  const host = new FakeHost();
  host.add("att-1", { tenant: "acme" });
  const client = new ControlPlaneClient({
    url: `127.0.0.1:${port}`,
    daemonId: "d-1",
    hostname: "h-1",
    metadata: { zone: "z1" },
    heartbeatIntervalMs: 60_000,
    subscribeAckTimeoutMs: 2000,
    host,
    logger: silent,
    backoff: { baseMs: 20, capMs: 100 },
    ...clientOpts,
  });
  client.start();
  cleanups.push(async () => {
    client.stop();
    await server.close(100);
  });
  return { server, host, client, rec, port };
}

const POLICY: PolicySpec = {
  mode: "allowlist",
  allow: ["10.0.0.0/8", { cidr: "192.0.2.0/24", ttlSeconds: 60 }],
  deny: ["10.66.0.0/16"],
  dns: { mode: "allowlist", allow: ["*.pypi.org", { domain: "github.com" }], upstreams: ["127.0.0.1:5353"] },
};

describe("ControlPlaneServer (SDK) with the real daemon-side client", () => {
  it("syncs a daemon and exposes its attachments and metadata", async () => {
    const { server, rec } = await setup(POLICY);
    await waitFor(() => rec.synced.length === 1, "onDaemonSynced");
    const d = rec.synced[0]!;
    expect(d.info).toEqual({ daemonId: "d-1", hostname: "h-1", metadata: { zone: "z1" } });
    expect([...d.attachments.values()].map((a) => [a.id, a.type, a.mode, a.metadata])).toEqual([["att-1", "interface", "allowlist", { tenant: "acme" }]]);
    expect(server.daemon("d-1")).toBe(d);
    expect(server.daemonOf("att-1")).toBe(d);
  });

  it("answers Subscribed with the policy returned by onSubscribed", async () => {
    const { client, host, rec } = await setup(POLICY);
    await waitFor(() => client.state() === "connected", "connected");
    const policy = await client.subscribe(host.add("att-2", { vm: "x" }));
    expect(rec.subscribed.map((a) => [a.id, a.dnsAddress, a.metadata])).toEqual([["att-2", "127.0.0.1:11000", { vm: "x" }]]);
    expect(policy.mode).toBe("allowlist");
    expect(policy.allowCidrs.map((r) => formatCidr(r.cidr))).toEqual(["10.0.0.0/8", "192.0.2.0/24"]);
    expect(policy.allowCidrs[1]!.expiresAtMs).not.toBeNull();
    expect(policy.denyCidrs.map((r) => formatCidr(r.cidr))).toEqual(["10.66.0.0/16"]);
    expect(policy.dns).toEqual({
      mode: "allowlist",
      allowDomains: [{ domain: "pypi.org", includeSubdomains: true }, { domain: "github.com", includeSubdomains: false }],
      denyDomains: [],
      upstreams: ["127.0.0.1:5353"],
    });
  });

  it("pushes every helper command and resolves with the daemon's CommandResult", async () => {
    const { host, rec } = await setup(POLICY);
    await waitFor(() => rec.synced.length === 1, "sync");
    const d = rec.synced[0]!;
    const outcomes = await Promise.all([
      d.setMode("att-1", "denylist"),
      d.allowCidr("att-1", "10.1.0.0/16", 30),
      d.denyCidr("att-1", "203.0.113.7"),
      d.removeCidr("att-1", "10.1.0.0/16"),
      d.bulkUpdate("att-1", POLICY),
      d.setDnsMode("att-1", "denylist"),
      d.allowDomain("att-1", "example.com", true),
      d.denyDomain("att-1", "evil.example"),
      d.removeDomain("att-1", "example.com"),
    ]);
    expect(outcomes.every((o) => o.applied && o.error === null && o.attachmentId === "att-1")).toBe(true);
    expect(new Set(outcomes.map((o) => o.commandId)).size).toBe(9);
    expect(host.applied.map((a) => a.command.kind)).toEqual([
      "set-mode", "allow-cidr", "deny-cidr", "remove-cidr", "bulk-update", "set-dns-mode", "allow-domain", "deny-domain", "remove-domain",
    ]);
  });

  it("reports rejected commands with the daemon's reason", async () => {
    const { host, rec } = await setup(POLICY);
    await waitFor(() => rec.synced.length === 1, "sync");
    const d = rec.synced[0]!;
    const bad = await d.allowCidr("att-1", "10.0.0.0/33");
    expect(bad.applied).toBe(false);
    expect(bad.error).toMatch(/prefix length 33 exceeds 32/);
    const unknown = await d.setMode("ghost", "block-all");
    expect(unknown).toMatchObject({ applied: false, error: "attachment ghost not found" });
    expect(host.applied).toEqual([]);
  });

  it("delivers heartbeats and Unsubscribed to the hooks", async () => {
    const { client, rec } = await setup(POLICY, {}, { heartbeatIntervalMs: 40 });
    await waitFor(() => rec.heartbeats.length >= 1, "heartbeat");
    expect(rec.heartbeats[0]!.map((s) => [s.id, s.packetsAllowed, s.packetsBlocked])).toEqual([["att-1", 100n, 7n]]);
    client.unsubscribed("att-1", "detached");
    await waitFor(() => rec.unsubscribed.length === 1, "unsubscribed");
    expect(rec.unsubscribed).toEqual([["att-1", "detached", ""]]);
    expect(rec.synced[0]!.attachments.has("att-1")).toBe(false);
  });

  it("answers QueryDns through onQueryDns with the owning daemon, the name canonical whichever form was sent", async () => {
    const seen: Array<[string, string, string | undefined, string, string | undefined]> = [];
    const { client } = await setup(POLICY, {
      onQueryDns: (q, d) => {
        seen.push([q.attachmentId, q.domain, q.questionName, q.queryType, d?.daemonId]);
        return q.domain.endsWith(".internal") ? { allow: true, ips: ["10.1.2.3"], ttlSeconds: 30, addToFilter: true } : { allow: false };
      },
    });
    await waitFor(() => client.state() === "connected", "connected");
    expect(await client.queryDns("att-1", "db.internal", "A")).toEqual({ allow: true, addToFilter: true, ips: ["10.1.2.3"], ttlSeconds: 30 });
    expect(await client.queryDns("att-1", "Evil.Example.", "AAAA")).toMatchObject({ allow: false, ips: [] });
    // The daemon sends the question with its trailing dot (Go original's form); hooks see it canonical.
    expect(seen).toEqual([["att-1", "db.internal", "db.internal.", "A", "d-1"], ["att-1", "evil.example", "Evil.Example.", "AAAA", "d-1"]]);
  });

  it("rejects pending sends when the daemon disconnects and tells the hook", async () => {
    const { client, host, rec } = await setup(POLICY);
    await waitFor(() => rec.synced.length === 1, "sync");
    host.applyDelayMs = 1000;
    const p = rec.synced[0]!.setMode("att-1", "block-all").then(() => null, (e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    client.stop();
    const err = await p;
    expect(err).toBeInstanceOf(CommandNotConfirmedError);
    await waitFor(() => rec.disconnected.length === 1, "disconnected hook");
    expect(rec.synced[0]!.connected).toBe(false);
  });

  it("enforces a bearer token when authenticate is set", async () => {
    const ok = (a: string | undefined) => a === "Bearer t0ken";
    const bad = await setup(POLICY, {}, { token: "wrong" }, ok);
    await new Promise((r) => setTimeout(r, 300));
    expect(bad.rec.synced).toEqual([]);
    expect(bad.client.state()).not.toBe("connected");
    const good = await setup(POLICY, {}, { token: "t0ken" }, ok);
    await waitFor(() => good.rec.synced.length === 1, "sync with token");
  });
});
