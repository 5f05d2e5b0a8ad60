import { afterEach, describe, expect, it } from "vitest";
import pino from "pino";
import { ControlPlaneServer, type DaemonHandle } from "../../../sdk/src/index.js";
import { ControlPlaneClient } from "../../../daemon/src/control-plane/connection.js";
import { formatCidr } from "@netfence/proto/parse";
import { FakeHost } from "./helpers/fake-host.js";

// Issue 15: commands whose scopes name users or groups are resolved through NSS (async) before they
// are parsed — inside the attachment's command queue, so they still apply in arrival order, and an
// unknown name is a rejected command while the stream stays up. Real gRPC stream, the daemon's
// client, a fake host that records what is applied.

const silent = pino({ level: "silent" });
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function connected(): Promise<{ host: FakeHost; daemon: DaemonHandle }> {
  let handle: DaemonHandle | null = null;
  const server = new ControlPlaneServer({ logger: silent, commandTimeoutMs: 5000, hooks: { onDaemonSynced: (d) => void (handle = d), onSubscribed: () => ({ mode: "allowlist" }) } });
  const port = await server.listen("127.0.0.1:0");
  const host = new FakeHost();
  host.add("att-1");
  const client = new ControlPlaneClient({
    url: `127.0.0.1:${port}`, daemonId: "d-1", hostname: "h-1", metadata: {}, heartbeatIntervalMs: 60_000, subscribeAckTimeoutMs: 2000,
    host, logger: silent, backoff: { baseMs: 20, capMs: 100 },
  });
  client.start();
  cleanups.push(async () => {
    client.stop();
    await server.close(100);
  });
  const deadline = Date.now() + 5000;
  while (handle === null) {
    if (Date.now() > deadline) throw new Error("no SyncRequest");
    await new Promise((r) => setTimeout(r, 10));
  }
  return { host, daemon: handle };
}

describe("commands with user and group names", () => {
  it("apply in arrival order around the NSS lookup; an unknown name is rejected and the next command applies", async () => {
    const { host, daemon } = await connected();
    const outcomes = await Promise.all([
      daemon.send("att-1", { kind: "deny-cidr", cidr: "10.1.0.0/16", scope: { users: ["root"] } }), // needs a lookup
      daemon.send("att-1", { kind: "allow-cidr", cidr: "10.2.0.0/16" }), // none
      daemon.send("att-1", { kind: "allow-cidr", cidr: "10.3.0.0/16", scope: { groups: ["root"], protocols: ["tcp"] } }),
      daemon.send("att-1", { kind: "allow-cidr", cidr: "10.4.0.0/16", scope: { users: ["netfence-no-such-user"] } }),
      daemon.send("att-1", { kind: "remove-cidr", cidr: "10.2.0.0/16" }),
    ]);
    expect(outcomes.map((o) => [o.applied, o.error])).toEqual([
      [true, null],
      [true, null],
      [true, null],
      [false, 'allow_cidr.scope.users: unknown user "netfence-no-such-user"'],
      [true, null],
    ]);
    const seen = host.applied.map(({ command: c }) => `${c.kind} ${c.kind === "remove-cidr" ? formatCidr(c.cidr) : "rule" in c && "cidr" in c.rule ? formatCidr(c.rule.cidr) : ""}`);
    expect(seen).toEqual(["deny-cidr 10.1.0.0/16", "allow-cidr 10.2.0.0/16", "allow-cidr 10.3.0.0/16", "remove-cidr 10.2.0.0/16"]);
    const first = host.applied[0]!.command;
    expect(first.kind === "deny-cidr" && first.rule.scope?.users).toEqual([{ id: 0, name: "root" }]);
    const third = host.applied[2]!.command;
    expect(third.kind === "allow-cidr" && third.rule.scope?.groups).toEqual([{ id: 0, name: "root" }]);
  });
});
