import { afterEach, describe, expect, it } from "vitest";
import { readFileSync, rmSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import pino from "pino";
import { ControlPlaneClient } from "../../../daemon/src/control-plane/connection.js";
import { TestControlPlane } from "./helpers/test-control-plane.js";
import { FakeHost } from "./helpers/fake-host.js";
import { makePki } from "./helpers/pki.js";

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

describe("ControlPlaneClient over TLS", () => {
  it("connects with mutual TLS and is refused without its client certificate", async () => {
    const pki = makePki();
    cleanups.push(() => rmSync(pki.dir, { recursive: true, force: true }));
    const cp = new TestControlPlane();
    const creds = grpc.ServerCredentials.createSsl(
      readFileSync(pki.ca),
      [{ private_key: readFileSync(pki.serverKey), cert_chain: readFileSync(pki.serverCert) }],
      true,
    );
    const port = await cp.start(0, creds);
    cleanups.push(() => cp.kill());
    const host = new FakeHost();
    host.add("att-tls");
    const base = {
      url: `127.0.0.1:${port}`, daemonId: "d", hostname: "h", metadata: {}, heartbeatIntervalMs: 60_000,
      subscribeAckTimeoutMs: 1000, host, logger: pino({ level: "silent" }), backoff: { baseMs: 50, capMs: 200 }, connectTimeoutMs: 1000,
    };

    const noClientCert = new ControlPlaneClient({ ...base, tls: { ca: pki.ca } });
    noClientCert.start();
    cleanups.push(() => noClientCert.stop());
    await new Promise((r) => setTimeout(r, 700));
    expect(cp.ofCase("sync")).toEqual([]);
    expect(noClientCert.state()).not.toBe("connected");
    noClientCert.stop();

    const client = new ControlPlaneClient({ ...base, tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey }, token: "tok" });
    client.start();
    cleanups.push(() => client.stop());
    await cp.waitFor(() => cp.ofCase("sync").length === 1, 10_000, "SyncRequest over TLS");
    expect(cp.ofCase("sync")[0]!.attachments.map((a) => a.id)).toEqual(["att-tls"]);
    expect(cp.authorizations).toEqual(["Bearer tok"]);
  });

  it("reports an unreadable certificate file as FAILED_PRECONDITION naming the key", () => {
    expect(() => new ControlPlaneClient({
      url: "127.0.0.1:1", daemonId: "d", hostname: "h", metadata: {}, heartbeatIntervalMs: 1000, subscribeAckTimeoutMs: 1000,
      host: new FakeHost(), logger: pino({ level: "silent" }), tls: { ca: "/nonexistent/ca.pem" },
    })).toThrow(/control_plane\.tls\.ca: cannot read \/nonexistent\/ca\.pem/);
  });
});
