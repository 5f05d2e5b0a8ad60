import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import { fixture, probe, requireKernel, Sandbox, type SandboxNetwork } from "../helpers/sandbox.js";
import { waitFor } from "../helpers/daemon-harness.js";
import { E2eDaemon } from "../helpers/e2e.js";
import { ControlPlaneServer, type DaemonHandle, type PolicySpec } from "../../sdk/src/index.js";

// Issue 15, end to end: the real `netfenced` and an in-process SDK control plane that sends scoped
// rules (CIDREntry.scope) — real kernel, real packets between sandbox namespaces, processes running
// as two different users (`daemon`, uid 1, and `nobody`, uid 65534) in a test cgroup.
//
// The enforcement cases need the kernel side of issue 15 (the scope table and its compiler, lanes K
// and S): on the policy lane's branch alone they fail (the old kernel ignores FilterEntry.scoped: a
// prefix with only scoped rules denies everything — fail closed); all five passed on a trial merge
// of s20-policy + s20-scope + s20-kernel. The validation cases hold on any kernel.

const PORT_A = 7441;
const PORT_B = 7442;
const DAEMON_UID = 1;
const NOBODY_UID = 65534;

describe("scoped rules, end to end: SDK control plane → daemon → kernel", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let server: ControlPlaneServer;
  let daemon: E2eDaemon;
  let handle: DaemonHandle | null = null;
  let s0 = "";
  let tcId = "";
  let cgId = "";
  let cg = "";

  const policies: Record<string, () => PolicySpec> = {
    // TC: the workload may reach s0 on tcp/PORT_A only.
    tc: () => ({ mode: "allowlist", allow: [{ cidr: `${s0}/32`, scope: { protocols: ["tcp"], ports: [PORT_A] } }] }),
    // cgroup: only user `daemon` may reach s0:PORT_A (names resolved by the daemon through NSS).
    cg: () => ({ mode: "allowlist", allow: [{ cidr: `${s0}/32`, scope: { protocols: ["tcp"], ports: [PORT_A], users: ["daemon"] } }] }),
  };

  /** A TCP connect from the workload namespace as `uid` (setpriv), optionally inside the test cgroup. */
  const probeAs = async (uid: number, port: number, inCgroup: boolean): Promise<boolean> => {
    const argv = ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", process.execPath, fixture("probe.mjs"), "tcp", s0, String(port), "800"];
    const r = await sb.exec(net.workloadNs, argv, { ...(inCgroup ? { cgroup: cg } : {}), allowFail: true, timeoutMs: 8000 });
    return r.stdout.trim() === "ok";
  };

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfsc");
    net = await sb.network();
    s0 = net.serverIp4[0]!;
    await sb.echoServer(net.serverNs, PORT_A);
    await sb.echoServer(net.serverNs, PORT_B);
    cg = await sb.cgroup();
    server = new ControlPlaneServer({
      logger: pino({ level: "silent" }),
      hooks: {
        onDaemonSynced: (d) => void (handle = d),
        onSubscribed: (_d, a) => policies[a.metadata["role"] ?? ""]?.() ?? { mode: "block-all" },
      },
    });
    const port = await server.listen("127.0.0.1:0");
    daemon = new E2eDaemon({
      pinRoot: await sb.pinRoot(),
      dns: { listenAddr: "127.0.0.1", upstream: "127.0.0.1:9" },
      controlPlane: { url: `127.0.0.1:${port}`, ackTimeout: "5s", heartbeat: "1s" },
    });
    await daemon.start();
    await waitFor(() => handle !== null, "the daemon's SyncRequest", 15_000);
    tcId = (await daemon.attachInterface(net.hostIf, { role: "tc" })).id;
    const r = await daemon.cli("attach", "-g", cg, "--metadata", "role=cg");
    if (r.code !== 0) throw new Error(`cgroup attach failed: ${r.stderr}`);
    cgId = /^ID: (\S+)$/m.exec(r.stdout)![1]!;
  }, 120_000);

  afterAll(async () => {
    await daemon?.cleanup();
    await server?.close(100);
    await sb?.cleanup();
  });

  it("L4 scope on an interface: tcp/PORT_A allowed, tcp/PORT_B and udp blocked to the same address", async () => {
    const reach = (kind: "tcp" | "udp", port: number) => probe(sb, net.workloadNs, kind, s0, { port, timeoutMs: 800 });
    expect({ a: await reach("tcp", PORT_A), b: await reach("tcp", PORT_B), udp: await reach("udp", PORT_A) }).toEqual({ a: true, b: false, udp: false });
    // Another scope of the same CIDR is another rule: PORT_B opens, PORT_A stays open.
    const out = await handle!.send(tcId, { kind: "allow-cidr", cidr: `${s0}/32`, scope: { protocols: ["tcp"], ports: [PORT_B] } });
    expect(out).toMatchObject({ applied: true, error: null });
    expect({ a: await reach("tcp", PORT_A), b: await reach("tcp", PORT_B) }).toEqual({ a: true, b: true });
    // RemoveCIDR removes every rule of the CIDR, whatever its scope.
    expect(await handle!.send(tcId, { kind: "remove-cidr", cidr: `${s0}/32` })).toMatchObject({ applied: true });
    expect({ a: await reach("tcp", PORT_A), b: await reach("tcp", PORT_B) }).toEqual({ a: false, b: false });
    expect(await handle!.bulkUpdate(tcId, policies.tc!())).toMatchObject({ applied: true });
  });

  it("owner scope on a cgroup: user daemon reaches s0:PORT_A, user nobody does not (the TC rule alone would let both through)", async () => {
    expect(await probeAs(DAEMON_UID, PORT_A, true)).toBe(true);
    expect(await probeAs(NOBODY_UID, PORT_A, true)).toBe(false);
    // Outside the cgroup only the interface attachment applies: nobody gets through there.
    expect(await probeAs(NOBODY_UID, PORT_A, false)).toBe(true);
  });

  it("user and group rules on an interface attachment are refused naming the rule; the stream stays up", async () => {
    const out = await handle!.send(tcId, { kind: "allow-cidr", cidr: "192.0.2.0/24", scope: { protocols: ["tcp"], users: ["daemon"] } });
    expect(out.applied).toBe(false);
    expect(out.error).toBe("allow-cidr 192.0.2.0/24 (tcp users=daemon(1)): user and group rules need a cgroup attachment");
    const bulk = await handle!.bulkUpdate(tcId, { mode: "allowlist", allow: [{ cidr: "192.0.2.0/24", scope: { groups: ["0"] } }] });
    expect(bulk.applied).toBe(false);
    expect(bulk.error).toMatch(/^allow-cidr 192\.0\.2\.0\/24 \(groups=0\): user and group rules need a cgroup attachment$/);
    // The stream is up and the policy unchanged: a valid command applies.
    expect(await handle!.send(tcId, { kind: "deny-cidr", cidr: "192.0.2.0/24" })).toMatchObject({ applied: true });
    expect(await handle!.send(tcId, { kind: "remove-cidr", cidr: "192.0.2.0/24" })).toMatchObject({ applied: true });
  });

  it("an unknown user name: the command is rejected naming the field, nothing changes", async () => {
    const out = await handle!.send(cgId, { kind: "allow-cidr", cidr: `${s0}/32`, scope: { users: ["netfence-no-such-user"] } });
    expect(out).toMatchObject({ applied: false, error: 'allow_cidr.scope.users: unknown user "netfence-no-such-user"' });
    const bad = await handle!.send(cgId, { kind: "bulk-update", policy: { mode: "allowlist", allow: [`${s0}/32`, { cidr: "10.9.0.0/16", scope: { groups: ["netfence-no-such-group"] } }] } });
    expect(bad).toMatchObject({ applied: false, error: 'bulk_update.allow_cidrs[1].scope.groups: unknown group "netfence-no-such-group"' });
    // The attachment still enforces what it had.
    expect(await handle!.send(cgId, { kind: "remove-cidr", cidr: "10.9.0.0/16" })).toMatchObject({ applied: true });
  });

  it("a command whose names are resolved keeps its place: deny (name) then allow (number) of the same (cidr, scope) ends allowed", async () => {
    // One rule named twice: users [nobody] and [65534] are the same scope. Sent back to back; the
    // first needs an NSS lookup, the second none. In order, the allow replaces the deny.
    const scope = (users: string[]) => ({ protocols: ["tcp"], ports: [PORT_A], users });
    const [a, b] = await Promise.all([
      handle!.send(cgId, { kind: "deny-cidr", cidr: `${s0}/32`, scope: scope(["nobody"]) }),
      handle!.send(cgId, { kind: "allow-cidr", cidr: `${s0}/32`, scope: scope([String(NOBODY_UID)]) }),
    ]);
    expect([a.applied, b.applied]).toEqual([true, true]);
    expect(await probeAs(NOBODY_UID, PORT_A, true)).toBe(true);
    // The deny alone closes it again (the probe sees the difference).
    expect(await handle!.send(cgId, { kind: "deny-cidr", cidr: `${s0}/32`, scope: scope(["nobody"]) })).toMatchObject({ applied: true });
    expect(await probeAs(NOBODY_UID, PORT_A, true)).toBe(false);
    expect(await probeAs(DAEMON_UID, PORT_A, true)).toBe(true);
    expect(await handle!.bulkUpdate(cgId, policies.cg!())).toMatchObject({ applied: true });
  });
});
