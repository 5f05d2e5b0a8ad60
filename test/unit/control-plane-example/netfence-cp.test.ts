import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { ControlPlane, DaemonEventSchema, type ControlCommand, type DaemonEvent } from "@netfence/proto/control";
import { methodDefinition } from "@netfence/proto/grpc";
import { startNetfenceCp } from "../../../control-plane-example/src/netfence-cp.js";
import { PolicyFileError } from "../../../control-plane-example/src/policy-file/parse-policy-file.js";
import { ControlPlaneClient } from "../../../daemon/src/control-plane/connection.js";
import { formatCidr } from "@netfence/proto/parse";
import type { PolicyCommand } from "../../../daemon/src/policy/policy.js";
import { FakeHost } from "../control-plane/helpers/fake-host.js";
import { makePki } from "../control-plane/helpers/pki.js";

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

const V1 = `
defaults: {mode: block-all}
rules:
  - name: web
    match: {app: web}
    mode: allowlist
    allow: [10.0.0.0/8]
    dns: {mode: allowlist, allow: ["*.example.com"]}
  - name: db
    match: {app: db}
    mode: denylist
    deny: [203.0.113.0/24]
`;
const V2 = V1.replace("allow: [10.0.0.0/8]", "allow: [10.0.0.0/8, {cidr: 192.168.0.0/16, ttl: 1h}]");

function bulkFor(host: FakeHost, id: string): Array<Extract<PolicyCommand, { kind: "bulk-update" }>> {
  return host.applied.filter((a) => a.id === id && a.command.kind === "bulk-update")
    .map((a) => a.command as Extract<PolicyCommand, { kind: "bulk-update" }>);
}

async function setup() {
  const dir = mkdtempSync(join(tmpdir(), "netfence-cp-"));
  const policyPath = join(dir, "policy.yaml");
  writeFileSync(policyPath, V1);
  const reloads: Array<{ ok: boolean; error?: string; pushed?: number }> = [];
  const cp = await startNetfenceCp({
    listen: "127.0.0.1:0",
    policyPath,
    debounceMs: 50,
    logger: silent,
    onReload: (r) => reloads.push(r.ok ? { ok: true, pushed: r.summary.pushed } : { ok: false, error: r.error }),
  });
  const host = new FakeHost();
  host.add("att-web", { app: "web" });
  host.add("att-db", { app: "db" });
  const client = new ControlPlaneClient({
    url: `127.0.0.1:${cp.port}`,
    daemonId: "d1",
    hostname: "h1",
    metadata: {},
    heartbeatIntervalMs: 60_000,
    subscribeAckTimeoutMs: 3000,
    host,
    logger: silent,
    backoff: { baseMs: 20, capMs: 100 },
  });
  client.start();
  cleanups.push(async () => {
    client.stop();
    await cp.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { cp, host, client, policyPath, dir, reloads };
}

describe("netfence-cp", () => {
  it("refuses to start on an invalid policy file, with file:line:col", async () => {
    const dir = mkdtempSync(join(tmpdir(), "netfence-cp-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const policyPath = join(dir, "bad.yaml");
    writeFileSync(policyPath, "rules:\n  - mode: sometimes\n");
    const err = await startNetfenceCp({ listen: "127.0.0.1:0", policyPath, logger: silent }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(PolicyFileError);
    expect((err as Error).message).toBe(`${policyPath}:2:11: rule "rules[0]": mode must be one of disabled, allowlist, denylist, block-all (got "sometimes")`);
  });

  it("reconciles a synced daemon, answers subscriptions by rule, and hot-reloads changes as BulkUpdates", async () => {
    const { host, client, policyPath, dir, reloads } = await setup();
    // On sync every listed attachment gets its full policy.
    await waitFor(() => bulkFor(host, "att-web").length === 1 && bulkFor(host, "att-db").length === 1, "reconcile on sync");
    expect(bulkFor(host, "att-web")[0]!.mode).toBe("allowlist");
    expect(bulkFor(host, "att-db")[0]!.mode).toBe("denylist");
    expect(bulkFor(host, "att-web")[0]!.dns).toMatchObject({ mode: "allowlist", allowDomains: [{ domain: "example.com", includeSubdomains: true }] });

    const other = await client.subscribe(host.add("att-other", { app: "batch" }));
    expect(other.mode).toBe("block-all");

    // Replace the file the way editors do (write a temp file, rename over): only att-web changes.
    writeFileSync(join(dir, ".policy.yaml.tmp"), V2);
    renameSync(join(dir, ".policy.yaml.tmp"), policyPath);
    await waitFor(() => bulkFor(host, "att-web").length === 2, "BulkUpdate after reload");
    await waitFor(() => reloads.length >= 1, "reload outcome");
    expect(reloads[reloads.length - 1]).toEqual({ ok: true, pushed: 1 });
    const pushed = bulkFor(host, "att-web")[1]!;
    expect(pushed.allowCidrs.map((r) => formatCidr(r.cidr))).toEqual(["10.0.0.0/8", "192.168.0.0/16"]);
    expect(pushed.allowCidrs[1]!.expiresAtMs).toBeGreaterThan(Date.now() + 3500_000);
    expect(pushed.dns).not.toBeNull(); // DNS replaced in the same atomic command
    expect(bulkFor(host, "att-db").length).toBe(1);
    expect(bulkFor(host, "att-other").length).toBe(0);

    // An invalid edit is rejected with its position and changes nothing anywhere.
    const before = host.applied.length;
    writeFileSync(policyPath, V2.replace("mode: denylist", "mode: denylist\n    deny: [not-a-cidr]"));
    await waitFor(() => reloads.some((r) => !r.ok), "rejected reload");
    const rejected = reloads.find((r) => !r.ok)!;
    expect(rejected.error).toMatch(new RegExp(`^${policyPath.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:\\d+:\\d+: `));
    expect(rejected.error).toMatch(/duplicate key|Map keys must be unique|not-a-cidr/);
    await new Promise((r) => setTimeout(r, 150));
    expect(host.applied.length).toBe(before);
    // The last good policy (V2) still answers new subscriptions.
    const web2 = await client.subscribe(host.add("att-web2", { app: "web" }));
    expect(web2.allowCidrs.map((r) => formatCidr(r.cidr))).toEqual(["10.0.0.0/8", "192.168.0.0/16"]);

    // Fixing the file moves att-db to a new rule order: the first matching rule wins.
    writeFileSync(policyPath, `defaults: {mode: block-all}\nrules:\n  - {name: all-db, match: {app: [db, batch]}, mode: disabled}\n${V2.split("rules:\n")[1]}`);
    await waitFor(() => bulkFor(host, "att-db").length === 2 && bulkFor(host, "att-other").length === 1, "pushes after fix");
    expect(bulkFor(host, "att-db")[1]!.mode).toBe("disabled");
    expect(bulkFor(host, "att-other")[0]!.mode).toBe("disabled");
    expect(bulkFor(host, "att-web").length).toBe(2);
  });

  it("serves mutual TLS with a bearer token and logs changed counters with --log-stats", async () => {
    const pki = makePki();
    const dir = mkdtempSync(join(tmpdir(), "netfence-cp-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    cleanups.push(() => rmSync(pki.dir, { recursive: true, force: true }));
    const policyPath = join(dir, "policy.yaml");
    writeFileSync(policyPath, V1);
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: "info" }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
    const cp = await startNetfenceCp({
      listen: "127.0.0.1:0", policyPath, logger, logStats: true, token: "t0k",
      tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.ca },
    });
    cleanups.push(() => cp.stop());
    const host = new FakeHost();
    host.add("att-web", { app: "web" });
    const client = new ControlPlaneClient({
      url: `127.0.0.1:${cp.port}`, daemonId: "tls-d", hostname: "h", metadata: {}, heartbeatIntervalMs: 50, subscribeAckTimeoutMs: 3000,
      host, logger: silent, backoff: { baseMs: 20, capMs: 100 }, token: "t0k", tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey },
    });
    client.start();
    cleanups.push(() => client.stop());
    await waitFor(() => bulkFor(host, "att-web").length === 1, "reconcile over TLS");
    await waitFor(() => lines.some((l) => l["msg"] === "counters"), "counters log line");
    const counters = lines.find((l) => l["msg"] === "counters")!;
    expect(counters).toMatchObject({ daemonId: "tls-d", attachmentId: "att-web", packetsAllowed: 100, packetsBlocked: 7, dnsQueriesAllowed: 3 });
    // Unchanged counters are not logged again.
    await new Promise((r) => setTimeout(r, 300));
    expect(lines.filter((l) => l["msg"] === "counters").length).toBe(1);
  });

  it("answers QueryDns for proxy-mode rules from the policy file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "netfence-cp-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const policyPath = join(dir, "policy.yaml");
    writeFileSync(policyPath, [
      "rules:",
      "  - name: proxied",
      "    match: {app: web}",
      "    mode: allowlist",
      "    dns:",
      "      mode: proxy",
      "      allow: [\"*.corp.example\"]",
      "      deny: [secret.corp.example]",
      "      answers: {db.internal: [10.30.0.5, \"fd00::5\"]}",
    ].join("\n"));
    const cp = await startNetfenceCp({ listen: "127.0.0.1:0", policyPath, logger: silent });
    cleanups.push(() => cp.stop());
    const host = new FakeHost();
    host.add("att-web", { app: "web" });
    host.add("att-other", {});
    const client = new ControlPlaneClient({
      url: `127.0.0.1:${cp.port}`, daemonId: "dns-d", hostname: "h", metadata: {}, heartbeatIntervalMs: 60_000,
      subscribeAckTimeoutMs: 3000, host, logger: silent, backoff: { baseMs: 20, capMs: 100 },
    });
    client.start();
    cleanups.push(() => client.stop());
    await waitFor(() => bulkFor(host, "att-web").length === 1, "sync");
    expect(bulkFor(host, "att-web")[0]!.dns).toMatchObject({ mode: "proxy" });
    expect(await client.queryDns("att-web", "DB.internal.", "A")).toEqual({ allow: true, addToFilter: true, ips: ["10.30.0.5", "fd00::5"], ttlSeconds: 60 });
    expect(await client.queryDns("att-web", "git.corp.example", "AAAA")).toEqual({ allow: true, addToFilter: true, ips: [], ttlSeconds: 0 });
    expect(await client.queryDns("att-web", "secret.corp.example", "A")).toMatchObject({ allow: false });
    expect(await client.queryDns("att-web", "evil.example", "A")).toMatchObject({ allow: false });
    // An attachment whose rule has no such answers (defaults: block-all, DNS disabled) gets refusals.
    expect(await client.queryDns("att-other", "db.internal", "A")).toMatchObject({ allow: false });
    expect(await client.queryDns("unknown-att", "db.internal", "A")).toMatchObject({ allow: false });
  });

  it("pushes to a daemon without the CommandResult extension (Go original) without waiting for results", async () => {
    const dir = mkdtempSync(join(tmpdir(), "netfence-cp-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const policyPath = join(dir, "policy.yaml");
    writeFileSync(policyPath, V1);
    const reloads: Array<{ ok: boolean; pushed?: number }> = [];
    const cp = await startNetfenceCp({
      listen: "127.0.0.1:0", policyPath, logger: silent, debounceMs: 50, commandTimeoutMs: 200,
      onReload: (r) => reloads.push(r.ok ? { ok: true, pushed: r.summary.pushed } : { ok: false }),
    });
    cleanups.push(() => cp.stop());
    // A legacy daemon: speaks the original protocol and never sends CommandResult.
    const channel = new grpc.Client(`127.0.0.1:${cp.port}`, grpc.credentials.createInsecure());
    cleanups.push(() => channel.close());
    const CONNECT = methodDefinition(ControlPlane.method.connect);
    const call = channel.makeBidiStreamRequest(CONNECT.path, CONNECT.requestSerialize, CONNECT.responseDeserialize, new grpc.Metadata(), {}) as grpc.ClientDuplexStream<DaemonEvent, ControlCommand>;
    cleanups.push(() => call.cancel());
    const received: ControlCommand[] = [];
    call.on("data", (c: ControlCommand) => received.push(c));
    call.on("error", () => undefined);
    call.write(create(DaemonEventSchema, { event: { case: "sync", value: { daemonId: "go-d", hostname: "h", attachments: [{ id: "att-web", metadata: { app: "web" } }] } } }));
    await waitFor(() => received.some((c) => c.command.case === "bulkUpdate"), "reconcile BulkUpdate");
    const daemon = cp.server.daemon("go-d")!;
    await waitFor(() => daemon.confirmsCommands === false, "legacy daemon detected");
    writeFileSync(policyPath, V2);
    await waitFor(() => received.filter((c) => c.command.case === "bulkUpdate").length === 2, "BulkUpdate after reload");
    const pushed = received.filter((c) => c.command.case === "bulkUpdate")[1]!;
    expect(pushed.commandId).toBe(""); // posted: nothing for a legacy daemon to ignore, nothing to wait for
    expect(pushed.id).toBe("att-web");
    await waitFor(() => reloads.length === 1, "reload outcome");
    expect(reloads[0]).toEqual({ ok: true, pushed: 1 });
  });
});
