import { afterEach, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import pino from "pino";
import { ControlPlaneClient, type ControlPlaneClientOptions } from "../../../daemon/src/control-plane/connection.js";
import { PacketEventSchema } from "@netfence/proto/control";
import { AttachmentType, DnsMode, PolicyMode } from "@netfence/proto/types";
import { formatCidr } from "@netfence/proto/parse";
import { isNetfenceError } from "@netfence/proto/errors";
import { TestControlPlane } from "./helpers/test-control-plane.js";
import { FakeHost } from "./helpers/fake-host.js";

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

async function setup(overrides: Partial<ControlPlaneClientOptions> = {}, cpOpts: { strict?: boolean } = {}) {
  const cp = new TestControlPlane();
  cp.strict = cpOpts.strict ?? false;
  const port = await cp.start();
  const host = new FakeHost();
  host.add("att-a", { tenant: "acme" });
  const client = new ControlPlaneClient({
    url: `127.0.0.1:${port}`,
    daemonId: "daemon-1",
    hostname: "host-1",
    metadata: { region: "test" },
    heartbeatIntervalMs: 60_000,
    subscribeAckTimeoutMs: 2000,
    host,
    logger: pino({ level: "silent" }),
    backoff: { baseMs: 20, capMs: 200 },
    ...overrides,
  });
  cleanups.push(() => { client.stop(); cp.kill(); });
  client.start();
  await cp.waitFor(() => cp.ofCase("sync").length === 1, 5000, "SyncRequest");
  await cp.waitFor(() => client.state() === "connected", 5000, "connected (SyncAck received)");
  return { cp, host, client, port };
}

describe("ControlPlaneClient", () => {
  it("sends SyncRequest with daemon identity, metadata and all attachments on connect", async () => {
    const { cp, client } = await setup();
    const sync = cp.ofCase("sync")[0]!;
    expect(sync.daemonId).toBe("daemon-1");
    expect(sync.hostname).toBe("host-1");
    expect(sync.metadata).toEqual({ region: "test" });
    expect(sync.attachments.map((a) => [a.id, a.target, a.type, a.mode, a.dnsMode, a.metadata])).toEqual([
      ["att-a", "veth-att-a", AttachmentType.TC, PolicyMode.ALLOWLIST, DnsMode.ALLOWLIST, { tenant: "acme" }],
    ]);
    expect(client.state()).toBe("connected");
    expect(cp.authorizations).toEqual([""]);
  });

  it("reports connecting, not connected, until the control plane answers", async () => {
    const cp = new TestControlPlane();
    cp.autoSyncAck = false;
    const port = await cp.start();
    const host = new FakeHost();
    const client = new ControlPlaneClient({
      url: `127.0.0.1:${port}`, daemonId: "d", hostname: "h", metadata: {}, heartbeatIntervalMs: 60_000, subscribeAckTimeoutMs: 1000,
      host, logger: pino({ level: "silent" }),
    });
    cleanups.push(() => { client.stop(); cp.kill(); });
    client.start();
    await cp.waitFor(() => cp.ofCase("sync").length === 1, 5000, "SyncRequest");
    expect(client.state()).toBe("connecting");
    cp.send({ command: { case: "syncAck", value: {} } });
    await cp.waitFor(() => client.state() === "connected", 5000, "connected after SyncAck");
  });

  it("sends the bearer token as authorization metadata", async () => {
    const { cp } = await setup({ token: "s3cret" });
    expect(cp.authorizations).toEqual(["Bearer s3cret"]);
  });

  it("subscribe sends Subscribed and resolves with the SubscribedAck policy", async () => {
    const { cp, host, client } = await setup();
    const view = host.add("att-b", { vm: "v1" });
    const policyP = client.subscribe(view);
    await cp.waitFor(() => cp.ofCase("subscribed").length === 1, 5000, "Subscribed");
    const sub = cp.ofCase("subscribed")[0]!;
    expect([sub.id, sub.dnsAddress, sub.metadata]).toEqual(["att-b", "127.0.0.1:11000", { vm: "v1" }]);
    cp.send({
      id: "att-b",
      command: {
        case: "subscribedAck",
        value: { mode: PolicyMode.ALLOWLIST, allowCidrs: [{ cidr: "10.0.0.0/8", ttl: create(DurationSchema, { seconds: 60n }) }], dns: { mode: DnsMode.ALLOWLIST, allowDomains: [{ domain: "example.com" }] } },
      },
    });
    const policy = await policyP;
    expect(policy.mode).toBe("allowlist");
    expect(policy.allowCidrs.map((r) => formatCidr(r.cidr))).toEqual(["10.0.0.0/8"]);
    expect(policy.allowCidrs[0]!.expiresAtMs).toBeGreaterThan(Date.now());
    expect(policy.dns.allowDomains).toEqual([{ domain: "example.com", includeSubdomains: false }]);
    // No command_id on the ack: no CommandResult.
    expect(cp.ofCase("commandResult")).toEqual([]);
  });

  it("fails subscribe with DEADLINE_EXCEEDED when no SubscribedAck arrives in time", async () => {
    const { cp, host, client } = await setup({ subscribeAckTimeoutMs: 300 });
    const err = await client.subscribe(host.add("att-slow")).then(() => null, (e: unknown) => e);
    expect(isNetfenceError(err) && err.code).toBe("DEADLINE_EXCEEDED");
    expect(String((err as Error).message)).toBe("no SubscribedAck within 300ms");
    // A late ack is answered as not applied when it carries a command id, and the stream stays up.
    cp.send({ id: "att-slow", commandId: "late-1", command: { case: "subscribedAck", value: { mode: PolicyMode.BLOCK_ALL } } });
    await cp.waitFor(() => cp.ofCase("commandResult").length === 1, 5000, "CommandResult");
    expect(cp.ofCase("commandResult")[0]).toMatchObject({ commandId: "late-1", attachmentId: "att-slow", applied: false });
    expect(client.state()).toBe("connected");
  });

  it("strict stream: rejects subscribe when the SubscribedAck has a bad entry, answering CommandResult with the reason", async () => {
    const { cp, host, client } = await setup({}, { strict: true });
    const p = client.subscribe(host.add("att-bad"));
    await cp.waitFor(() => cp.ofCase("subscribed").length === 1);
    cp.send({ id: "att-bad", commandId: "ack-9", command: { case: "subscribedAck", value: { mode: PolicyMode.ALLOWLIST, denyCidrs: [{ cidr: "10.0.0.0/40" }] } } });
    const err = await p.then(() => null, (e: unknown) => e);
    expect(isNetfenceError(err) && err.code).toBe("INVALID_ARGUMENT");
    expect((err as Error).message).toMatch(/subscribed_ack\.deny_cidrs\[0\]\.cidr/);
    await cp.waitFor(() => cp.ofCase("commandResult").length === 1);
    expect(cp.ofCase("commandResult")[0]).toMatchObject({ commandId: "ack-9", applied: false });
  });

  it("Go-original stream: a bad CIDR of a SubscribedAck is skipped and reported, the attach gets the rest", async () => {
    const { cp, host, client } = await setup();
    const p = client.subscribe(host.add("att-half"));
    await cp.waitFor(() => cp.ofCase("subscribed").length === 1);
    cp.send({ id: "att-half", commandId: "ack-1", command: { case: "subscribedAck", value: { mode: PolicyMode.ALLOWLIST, allowCidrs: [{ cidr: "10.0.0.0/8" }, { cidr: "10.0.0.0/40" }] } } });
    const policy = await p;
    expect(policy.allowCidrs.map((r) => formatCidr(r.cidr))).toEqual(["10.0.0.0/8"]);
    await cp.waitFor(() => cp.ofCase("commandResult").length === 1);
    const result = cp.ofCase("commandResult")[0]!;
    expect(result).toMatchObject({ commandId: "ack-1", applied: true, error: "" });
    expect(result.skipped).toHaveLength(1);
    expect(result.skipped[0]).toMatch(/^subscribed_ack\.allow_cidrs\[1\]\.cidr: /);
  });

  it("subscribe_ack_timeout 0: attach returns at once on the initial policy; the SubscribedAck applies when it comes", async () => {
    const initial = { mode: "block-all" as const, audit: false, allowCidrs: [], denyCidrs: [], dns: { mode: "disabled" as const, allowDomains: [], denyDomains: [], upstreams: [] } };
    const { cp, host, client } = await setup({ subscribeAckTimeoutMs: 0, initialPolicy: initial });
    const view = host.add("att-now");
    expect(await client.subscribe(view)).toBe(initial);
    await cp.waitFor(() => cp.ofCase("subscribed").length === 1, 5000, "Subscribed");
    expect(host.applied).toEqual([]);
    cp.send({ id: "att-now", command: { case: "subscribedAck", value: { mode: PolicyMode.ALLOWLIST, allowCidrs: [{ cidr: "10.0.0.0/8" }] } } });
    await cp.waitFor(() => host.applied.length === 1, 5000, "late ack applied");
    expect(host.applied[0]!.id).toBe("att-now");
    expect(host.applied[0]!.command).toMatchObject({ kind: "bulk-update", mode: "allowlist", dns: { mode: "disabled" } });
    // Only once: a second ack for it is unexpected.
    cp.send({ id: "att-now", commandId: "again", command: { case: "subscribedAck", value: { mode: PolicyMode.DISABLED } } });
    await cp.waitFor(() => cp.ofCase("commandResult").length === 1);
    expect(cp.ofCase("commandResult")[0]).toMatchObject({ commandId: "again", applied: false });
    expect(host.applied).toHaveLength(1);
  });

  it("an adopted attachment is announced with Subscribed; its SubscribedAck applies", async () => {
    const { cp, host, client } = await setup();
    client.adopted(host.add("att-orphan"));
    await cp.waitFor(() => cp.ofCase("subscribed").some((s) => s.id === "att-orphan"), 5000, "Subscribed");
    cp.send({ id: "att-orphan", commandId: "a1", command: { case: "subscribedAck", value: { mode: PolicyMode.DENYLIST } } });
    await cp.waitFor(() => cp.ofCase("commandResult").length === 1);
    expect(cp.ofCase("commandResult")[0]).toMatchObject({ commandId: "a1", applied: true });
    expect(host.applied).toEqual([{ id: "att-orphan", command: expect.objectContaining({ kind: "bulk-update", mode: "denylist" }) as unknown }]);
  });

  it("applies every command kind to the host in order", async () => {
    const { cp, host } = await setup();
    host.applyDelayMs = 5; // ordering must hold even when applying takes time
    const id = "att-a";
    cp.send({ id, command: { case: "setMode", value: { mode: PolicyMode.DENYLIST } } });
    cp.send({ id, command: { case: "allowCidr", value: { cidr: "10.1.0.0/16", ttl: create(DurationSchema, { seconds: 5n }) } } });
    cp.send({ id, command: { case: "denyCidr", value: { cidr: "2001:db8::/32" } } });
    cp.send({ id, command: { case: "removeCidr", value: "10.1.0.0/16" } });
    cp.send({ id, command: { case: "bulkUpdate", value: { mode: PolicyMode.ALLOWLIST, allowCidrs: [{ cidr: "192.168.0.0/24" }] } } });
    cp.send({ id, command: { case: "setDnsMode", value: { mode: DnsMode.PROXY } } });
    cp.send({ id, command: { case: "allowDomain", value: { domain: "pypi.org", includeSubdomains: true } } });
    cp.send({ id, command: { case: "denyDomain", value: { domain: "evil.example" } } });
    cp.send({ id, command: { case: "removeDomain", value: "pypi.org" } });
    await cp.waitFor(() => host.applied.length === 9, 5000, "9 commands applied");
    expect(host.applied.map((a) => a.command.kind)).toEqual([
      "set-mode", "allow-cidr", "deny-cidr", "remove-cidr", "bulk-update", "set-dns-mode", "allow-domain", "deny-domain", "remove-domain",
    ]);
    expect(host.applied.every((a) => a.id === id)).toBe(true);
    expect(host.applied[0]!.command).toEqual({ kind: "set-mode", mode: "denylist", audit: null });
    expect(host.applied[5]!.command).toEqual({ kind: "set-dns-mode", mode: "proxy" });
    expect(cp.ofCase("commandResult")).toEqual([]);
  });

  it("rejects invalid commands, keeps the stream up, and answers CommandResult only when command_id is set", async () => {
    const { cp, host, client } = await setup();
    cp.send({ id: "att-a", command: { case: "allowCidr", value: { cidr: "10.0.0.0/33" } } });
    cp.send({ id: "att-a", commandId: "c1", command: { case: "allowCidr", value: { cidr: "garbage" } } });
    cp.send({ id: "att-a", commandId: "c2", command: { case: "setMode", value: { mode: PolicyMode.UNSPECIFIED } } });
    cp.send({ id: "att-a", commandId: "c3", command: { case: "allowDomain", value: { domain: "" } } });
    cp.send({ id: "nope", commandId: "c4", command: { case: "setMode", value: { mode: PolicyMode.BLOCK_ALL } } });
    cp.send({ id: "att-a", commandId: "c5" });
    cp.send({ id: "att-a", command: { case: "setMode", value: { mode: PolicyMode.BLOCK_ALL } } });
    cp.send({ id: "att-a", commandId: "c6", command: { case: "allowCidr", value: { cidr: "1.2.3.4" } } });
    await cp.waitFor(() => cp.ofCase("commandResult").length === 6, 5000, "6 results");
    const results = new Map(cp.ofCase("commandResult").map((r) => [r.commandId, r]));
    expect([...results.keys()].sort()).toEqual(["c1", "c2", "c3", "c4", "c5", "c6"]);
    expect(results.get("c1")).toMatchObject({ applied: false, attachmentId: "att-a" });
    expect(results.get("c1")!.error).toMatch(/allow_cidr\.cidr: invalid CIDR "garbage"/);
    expect(results.get("c2")).toMatchObject({ applied: true, error: "" }); // UNSPECIFIED = DISABLED (Go original)
    expect(results.get("c3")!.error).toMatch(/domain is empty/);
    expect(results.get("c4")).toMatchObject({ applied: false, error: "attachment nope not found" });
    expect(results.get("c5")!.error).toMatch(/no command set/);
    expect(results.get("c6")).toMatchObject({ applied: true, error: "", attachmentId: "att-a" });
    expect(host.applied.map((a) => a.command.kind)).toEqual(["set-mode", "set-mode", "allow-cidr"]);
    expect(host.applied[0]!.command).toEqual({ kind: "set-mode", mode: "disabled", audit: null });
    expect(client.state()).toBe("connected");
    expect(cp.streams).toBe(1);
  });

  it("survives a burst of 10k commands, valid and invalid, applying the valid ones in order", async () => {
    const { cp, host, client } = await setup();
    for (let i = 0; i < 10_000; i++) {
      if (i % 10 === 9) cp.send({ id: "att-a", command: { case: "allowCidr", value: { cidr: `10.${i}.0.0/8` } } }); // invalid octet ≥ 256 mostly
      else cp.send({ id: "att-a", command: { case: "allowCidr", value: { cidr: `10.${(i >> 8) & 255}.${i & 255}.0/24` } } });
    }
    cp.send({ id: "att-a", commandId: "last", command: { case: "setMode", value: { mode: PolicyMode.DENYLIST } } });
    await cp.waitFor(() => cp.ofCase("commandResult").length === 1, 30_000, "last result");
    const applied = host.applied.flatMap((a) => (a.command.kind === "allow-cidr" ? [formatCidr(a.command.rule.cidr)] : []));
    // Exactly the valid ones (10.<i>.0.0/8 is valid only while i < 256), in arrival order.
    const expected = Array.from({ length: 10_000 }, (_, i) => i)
      .filter((i) => i % 10 !== 9 || i < 256)
      .map((i) => (i % 10 === 9 ? "10.0.0.0/8" : `10.${(i >> 8) & 255}.${i & 255}.0/24`));
    expect(applied).toEqual(expected);
    expect(host.applied[host.applied.length - 1]!.command).toEqual({ kind: "set-mode", mode: "denylist", audit: null });
    expect(client.state()).toBe("connected");
    expect(cp.streams).toBe(1);
  });

  it("accepts a BulkUpdate larger than gRPC's 4 MiB default message size", async () => {
    const { cp, host } = await setup();
    const allowCidrs = Array.from({ length: 250_000 }, (_, i) => ({ cidr: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32` }));
    cp.send({ id: "att-a", commandId: "big", command: { case: "bulkUpdate", value: { mode: PolicyMode.ALLOWLIST, allowCidrs } } });
    await cp.waitFor(() => cp.ofCase("commandResult").length === 1, 30_000, "big result");
    expect(cp.ofCase("commandResult")[0]).toMatchObject({ commandId: "big", applied: true });
    const bulk = host.applied[0]!.command;
    expect(bulk.kind === "bulk-update" && bulk.allowCidrs.length).toBe(250_000);
  });

  it("answers SyncAck with a command_id and otherwise stays silent", async () => {
    const { cp } = await setup();
    cp.send({ command: { case: "syncAck", value: {} } });
    cp.send({ commandId: "s1", command: { case: "syncAck", value: {} } });
    await cp.waitFor(() => cp.ofCase("commandResult").length === 1);
    expect(cp.ofCase("commandResult")[0]).toMatchObject({ commandId: "s1", applied: true });
  });

  it("sends heartbeats with the host's per-attachment stats", async () => {
    const { cp } = await setup({ heartbeatIntervalMs: 50 });
    await cp.waitFor(() => cp.ofCase("heartbeat").length >= 2, 5000, "2 heartbeats");
    const hb = cp.ofCase("heartbeat")[0]!;
    expect(hb.stats.map((s) => [s.id, s.packetsAllowed, s.packetsBlocked, s.dnsQueriesAllowed, s.dnsQueriesBlocked])).toEqual([
      ["att-a", 100n, 7n, 3n, 1n],
    ]);
  });

  it("sends Unsubscribed with the reason", async () => {
    const { cp, client } = await setup();
    client.unsubscribed("att-a", "removed");
    client.unsubscribed("att-x", "error", "filter vanished");
    await cp.waitFor(() => cp.ofCase("unsubscribed").length === 2);
    expect(cp.ofCase("unsubscribed").map((u) => [u.id, u.reason, u.error])).toEqual([
      ["att-a", 1, ""],
      ["att-x", 3, "filter vanished"],
    ]);
  });

  it("strict stream (SyncAck.strict): UNSPECIFIED modes and a BulkUpdate with one bad entry are rejected", async () => {
    const { cp, host } = await setup({}, { strict: true });
    cp.send({ id: "att-a", commandId: "s1", command: { case: "setMode", value: { mode: PolicyMode.UNSPECIFIED } } });
    cp.send({ id: "att-a", commandId: "s2", command: { case: "bulkUpdate", value: { mode: PolicyMode.ALLOWLIST, allowCidrs: [{ cidr: "1.2.3.0/24" }, { cidr: "bad" }] } } });
    cp.send({ id: "att-a", commandId: "s3", command: { case: "bulkUpdate", value: { mode: PolicyMode.ALLOWLIST, allowCidrs: [{ cidr: "1.2.3.0/24" }] } } });
    await cp.waitFor(() => cp.ofCase("commandResult").length === 3, 5000, "3 results");
    const results = new Map(cp.ofCase("commandResult").map((r) => [r.commandId, r]));
    expect(results.get("s1")!.error).toMatch(/POLICY_MODE_UNSPECIFIED/);
    expect(results.get("s2")!.error).toMatch(/bulk_update\.allow_cidrs\[1\]\.cidr/);
    expect(results.get("s3")).toMatchObject({ applied: true });
    expect(host.applied.map((a) => a.command.kind)).toEqual(["bulk-update"]);
  });

  it("answers QueryDns through the control plane", async () => {
    const { cp, client } = await setup();
    cp.dnsAnswer = { allow: true, addToFilter: true, ips: ["10.9.9.9"], ttlSeconds: 42 };
    const answer = await client.queryDns("att-a", "svc.internal", "A");
    expect(answer).toEqual({ allow: true, addToFilter: true, ips: ["10.9.9.9"], ttlSeconds: 42 });
    // The question name with its trailing dot, as the Go original sends it.
    expect(cp.dnsQueries.map((q) => [q.id, q.domain, q.queryType])).toEqual([["att-a", "svc.internal.", "A"]]);
  });

  it("forwards packet events as a PacketEventBatch only once the control plane asked (SyncAck.packet_events)", async () => {
    const { cp, client } = await setup();
    const ev = create(PacketEventSchema, { attachmentId: "att-a", dst: "1.1.1.1", protocol: "udp", metadata: { team: "a" } });
    // A Go-original control plane never asks: nothing is sent to it.
    expect(client.wantsPacketEvents()).toBe(false);
    expect(client.publishEvents([ev])).toBe(false);
    cp.send({ commandId: "ask", command: { case: "syncAck", value: { packetEvents: true } } });
    await cp.waitFor(() => cp.ofCase("commandResult").some((r) => r.commandId === "ask"));
    expect(client.wantsPacketEvents()).toBe(true);
    expect(client.publishEvents([ev])).toBe(true);
    await cp.waitFor(() => cp.ofCase("packetEvents").length === 1);
    expect(cp.ofCase("packetEvents")[0]!.events[0]).toMatchObject({ attachmentId: "att-a", dst: "1.1.1.1", metadata: { team: "a" } });
    // A later SyncAck without it stops them again.
    cp.send({ commandId: "stop", command: { case: "syncAck", value: {} } });
    await cp.waitFor(() => cp.ofCase("commandResult").some((r) => r.commandId === "stop"));
    expect(client.publishEvents([ev])).toBe(false);
    expect(cp.ofCase("packetEvents")).toHaveLength(1);
  });

  it("is fail-static: reconnects with backoff after the control plane dies and resyncs", async () => {
    const { cp, host, client, port } = await setup();
    cp.kill();
    await cp.waitFor(() => client.state() !== "connected", 5000, "disconnect");
    // Commands cannot arrive, but the client keeps state and retries; attachments change meanwhile.
    host.add("att-new");
    expect(client.publishEvents([create(PacketEventSchema, {})])).toBe(false);
    // Give the client a few failed attempts before the control plane returns on the same port.
    await new Promise((r) => setTimeout(r, 300));
    expect(client.state()).not.toBe("connected");
    const cp2 = new TestControlPlane();
    await cp2.start(port);
    cleanups.push(() => cp2.kill());
    await cp2.waitFor(() => cp2.ofCase("sync").length === 1, 10_000, "resync");
    expect(cp2.ofCase("sync")[0]!.attachments.map((a) => a.id).sort()).toEqual(["att-a", "att-new"]);
    await cp2.waitFor(() => client.state() === "connected");
    cp2.send({ id: "att-new", commandId: "after", command: { case: "setMode", value: { mode: PolicyMode.BLOCK_ALL } } });
    await cp2.waitFor(() => cp2.ofCase("commandResult").length === 1);
    expect(cp2.ofCase("commandResult")[0]).toMatchObject({ commandId: "after", applied: true });
  });

  it("fails over between several addresses: a dead one leaves the daemon to the next, which it resyncs with (issue 16)", async () => {
    const a = new TestControlPlane();
    const b = new TestControlPlane();
    b.strict = true; // one bad entry rejects the whole BulkUpdate
    const portA = await a.start();
    const portB = await b.start();
    cleanups.push(() => { a.kill(); b.kill(); });
    // The first address is unreachable (a port nobody listens on: the just-freed one of a third server).
    const dead = new TestControlPlane();
    const portDead = await dead.start();
    dead.kill();
    const host = new FakeHost();
    host.add("att-a");
    const client = new ControlPlaneClient({
      url: `127.0.0.1:${portDead}, 127.0.0.1:${portA},127.0.0.1:${portB}`,
      daemonId: "daemon-1", hostname: "host-1", metadata: {}, heartbeatIntervalMs: 60_000, subscribeAckTimeoutMs: 2000,
      host, logger: pino({ level: "silent" }), backoff: { baseMs: 20, capMs: 200 },
    });
    cleanups.push(() => client.stop());
    client.start();
    await a.waitFor(() => a.ofCase("sync").length === 1, 5000, "SyncRequest on the second address");
    await a.waitFor(() => client.state() === "connected");
    expect(client.address()).toBe(`127.0.0.1:${portA}`);
    expect(b.ofCase("sync")).toHaveLength(0);
    // A dies: the daemon moves on to B and resyncs its attachments there; commands work on B.
    a.kill();
    await b.waitFor(() => b.ofCase("sync").length === 1, 5000, "SyncRequest on the third address");
    expect(b.ofCase("sync")[0]!.attachments.map((x) => x.id)).toEqual(["att-a"]);
    await b.waitFor(() => client.state() === "connected");
    expect(client.address()).toBe(`127.0.0.1:${portB}`);
    b.send({ id: "att-a", commandId: "v", command: { case: "bulkUpdate", value: { mode: PolicyMode.BLOCK_ALL, policyVersion: "web@7" } } });
    await b.waitFor(() => b.ofCase("commandResult").length === 1);
    // The fleet extension: the applied BulkUpdate's policy_version comes back in the CommandResult.
    expect(b.ofCase("commandResult")[0]).toMatchObject({ commandId: "v", applied: true, policyVersion: "web@7" });
    b.send({ id: "att-a", commandId: "bad", command: { case: "bulkUpdate", value: { mode: PolicyMode.ALLOWLIST, allowCidrs: [{ cidr: "10.0.0.0/33" }], policyVersion: "web@8" } } });
    await b.waitFor(() => b.ofCase("commandResult").length === 2);
    expect(b.ofCase("commandResult")[1]).toMatchObject({ commandId: "bad", applied: false, policyVersion: "" });
  });

  it("holds a subscribe made while disconnected until the control plane is back, within the timeout", async () => {
    const { cp, host, client, port } = await setup({ subscribeAckTimeoutMs: 8000 });
    cp.kill();
    await cp.waitFor(() => client.state() !== "connected", 5000, "disconnect");
    const p = client.subscribe(host.add("att-wait"));
    const cp2 = new TestControlPlane();
    await cp2.start(port);
    cleanups.push(() => cp2.kill());
    await cp2.waitFor(() => cp2.ofCase("subscribed").length === 1, 10_000, "Subscribed after reconnect");
    // SyncRequest first, then the pending Subscribed.
    expect(cp2.events[0]!.event.case).toBe("sync");
    cp2.send({ id: "att-wait", command: { case: "subscribedAck", value: { mode: PolicyMode.BLOCK_ALL } } });
    await expect(p).resolves.toMatchObject({ mode: "block-all" });
  });

  it("rejects subscriptions with UNAVAILABLE on stop and does not reconnect afterwards", async () => {
    const { cp, host, client } = await setup();
    const p = client.subscribe(host.add("att-z"));
    client.stop();
    const err = await p.then(() => null, (e: unknown) => e);
    expect(isNetfenceError(err) && err.code).toBe("UNAVAILABLE");
    expect(client.state()).toBe("disconnected");
    await new Promise((r) => setTimeout(r, 200));
    expect(cp.streams).toBe(1);
  });
});
