import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { requireKernel, Sandbox, type SandboxNetwork } from "../helpers/sandbox.js";
import { waitFor } from "../helpers/daemon-harness.js";
import { E2eDaemon, NETFENCE_CP, reachability, startPing } from "../helpers/e2e.js";
import { startPostgres, type TestPostgres } from "../helpers/postgres.js";
import { FleetReplica } from "../helpers/fleet.js";
import { SimFleet } from "../helpers/sim-daemons.js";
import { AdminClient, AdminError } from "../../control-plane-example/src/fleet/admin-client.js";
import type { FleetStatus } from "../../control-plane-example/src/fleet/fleet-status.js";
import type { AuditRow } from "../../control-plane-example/src/fleet/fleet-store.js";

// Issue 16, end to end: a real PostgreSQL (initdb in a temp dir), three `netfence-cp --database`
// replicas (the built binary, killed with SIGKILL), 1,000 simulated daemons speaking the real
// protocol and failing over between the replicas, and one real netfenced enforcing on a sandbox
// workload whose control_plane.url lists the three replicas. Real kernel, real packets.

const run = promisify(execFile);
const SIMS = 1000;
const PORT = 7431;
const CONNECTED = "CONNECTION_STATE_CONNECTED";

describe("fleet control plane: netfence-cp replicas on PostgreSQL", () => {
  let pg: TestPostgres;
  const replicas: FleetReplica[] = [];
  let sims: SimFleet;
  let sb: Sandbox;
  let net: SandboxNetwork;
  let daemon: E2eDaemon;
  let s: readonly string[];
  const versions = { sim: 0, real: 0 };

  const adminUrl = (): string => replicas.find((r) => r.alive)!.adminUrl;
  const admin = (): AdminClient => new AdminClient(adminUrl());
  const cpStatus = async () => (await daemon.statusJson()) as unknown as { controlPlaneAddress: string; controlPlaneState: string };
  const cli = async (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    run(process.execPath, [NETFENCE_CP, ...args], { timeout: 30_000 }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? 1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" }),
    );
  const putSim = async (cidr: string) => {
    const r = await admin().send<{ version: number }>("PUT", "/v1/policies/sim", {
      priority: 10, match: { sim: "yes" }, mode: "allowlist", allow: [cidr], expectedVersion: versions.sim, author: "alice", reason: `sims to ${cidr}`,
    });
    versions.sim = r.version;
  };
  const putReal = async (allow: readonly string[]) => {
    const r = await admin().send<{ version: number }>("PUT", "/v1/policies/real", {
      priority: 20, match: { app: "fleet-demo" }, mode: "allowlist", allow, expectedVersion: versions.real, author: "bob", reason: `workload to ${allow.join(" ")}`,
    });
    versions.real = r.version;
  };
  const simsOn = (version: string) => sims.attachments().filter((a) => a.daemon.versions.get(a.id) === version).length;
  const status = () => admin().get<FleetStatus>("/v1/status");
  const expectReach = async (want: Record<string, boolean>) => expect(await reachability(sb, net.workloadNs, PORT, Object.keys(want))).toEqual(want);

  beforeAll(async () => {
    await requireKernel();
    pg = await startPostgres();
    const first = await cli(["migrate", "--database", pg.url]);
    expect(first).toMatchObject({ code: 0, stdout: "schema at version 1 (applied 1)\n" });
    expect((await cli(["migrate", "--database", pg.url])).stdout).toBe("schema already at version 1\n");
    for (const name of ["r0", "r1", "r2"]) replicas.push(new FleetReplica(name, pg.url));
    await Promise.all(replicas.map((r) => r.start()));
    sb = await Sandbox.create("nffl");
    net = await sb.network();
    s = net.serverIp4;
    await sb.echoServer(net.serverNs, PORT);
    await putSim("10.1.0.0/16");
    await putReal([s[0]!]);
    sims = new SimFleet(replicas.map((r) => r.address));
    sims.add(SIMS, 1, () => ({ sim: "yes" }));
    daemon = new E2eDaemon({
      pinRoot: await sb.pinRoot(),
      dns: { listenAddr: "127.0.0.1", upstream: "127.0.0.1:9" },
      controlPlane: { url: replicas.map((r) => r.address).join(","), ackTimeout: "5s", heartbeat: "1s" },
    });
    await daemon.start();
    await waitFor(async () => (await daemon.statusJson()).controlPlaneState === CONNECTED, "daemon connected", 15_000);
  }, 120_000);

  afterAll(async () => {
    sims?.stop();
    await daemon?.cleanup();
    for (const r of replicas) await r.cleanup();
    await sb?.cleanup();
    await pg?.stop();
  });

  it("every attachment gets its policy by label selector and confirms the version; status counts them", async () => {
    await waitFor(() => simsOn("sim@1") === SIMS, "all simulated attachments on sim@1", 30_000);
    const att = await daemon.attachInterface(net.hostIf, { app: "fleet-demo" });
    await expectReach({ [s[0]!]: true, [s[1]!]: false });
    await waitFor(async () => (await status()).attachmentsByVersion["real@1"] === 1 && (await status()).attachmentsByVersion["sim@1"] === SIMS, "acks stored", 15_000);
    const st = await status();
    expect(st.attachmentsByVersion).toEqual({ "sim@1": SIMS, "real@1": 1 });
    expect(st.daemons.connected).toBe(SIMS + 1);
    expect(st.replicas.map((r) => [r.replicaId, r.alive])).toEqual([["r0", true], ["r1", true], ["r2", true]]);
    // Every replica holds a share of the daemons.
    for (const r of st.replicas) expect(r.daemons).toBeGreaterThan(SIMS / 4);
    const text = await cli(["status", "--admin", replicas[1]!.adminUrl]);
    expect(text.stdout).toContain(`${SIMS}\tattachments on sim@1`);
    expect(text.stdout).toContain("0 attachments behind");
    const daemons = await admin().get<Array<{ daemonId: string; attachments: Array<{ attachmentId: string; ackedVersion: string }> }>>("/v1/daemons");
    expect(daemons.find((d) => d.attachments.some((a) => a.attachmentId === att.id))!.attachments).toEqual([expect.objectContaining({ attachmentId: att.id, ackedVersion: "real@1" })]);
  });

  it("a change is committed once and pushed to every attachment; a stale-version edit is refused and changes nothing", async () => {
    await putSim("10.2.0.0/16");
    await putReal([s[1]!]);
    await waitFor(() => simsOn("sim@2") === SIMS, "all simulated attachments on sim@2", 30_000);
    await expectReach({ [s[1]!]: true, [s[0]!]: false });
    await waitFor(async () => (await status()).attachmentsByVersion["real@2"] === 1, "the real daemon's ack of real@2", 10_000);

    // Someone who read version 1 edits: refused (409) with the reason, through the API and the CLI.
    const stale = await admin().send("PUT", "/v1/policies/real", { match: { app: "fleet-demo" }, mode: "disabled", expectedVersion: 1, author: "mallory", reason: "old copy" })
      .then(() => null, (e: unknown) => e);
    expect(stale).toBeInstanceOf(AdminError);
    expect((stale as AdminError).status).toBe(409);
    expect((stale as AdminError).message).toBe(`policy "real" is at version 2, not 1: someone changed it since you read it; re-read and retry; nothing changed`);
    const dir = mkdtempSync(join(tmpdir(), "nf-fleet-pol-"));
    try {
      writeFileSync(join(dir, "real.yaml"), "name: real\npriority: 20\nmatch: {app: fleet-demo}\nmode: disabled\n");
      const r = await cli(["policy", "apply", join(dir, "real.yaml"), "--expected-version", "1", "--author", "mallory", "--reason", "old copy", "--admin", adminUrl()]);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain("is at version 2, not 1");
      const noReason = await cli(["policy", "apply", join(dir, "real.yaml"), "--expected-version", "2", "--author", "mallory", "--reason", " ", "--admin", replicas[2]!.adminUrl]);
      expect(noReason).toMatchObject({ code: 2, stderr: "netfence-cp: every change needs a reason\n" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    await expectReach({ [s[1]!]: true, [s[0]!]: false });
    const audit = await admin().get<AuditRow[]>("/v1/audit?limit=10");
    expect(audit.map((a) => [a.action, a.policy, a.version, a.author])).toEqual([
      ["update", "real", 2, "bob"], ["update", "sim", 2, "alice"], ["create", "real", 1, "bob"], ["create", "sim", 1, "alice"],
    ]);
    // The CLI's read commands over the same API.
    const auditText = await cli(["audit", "--limit", "2", "--admin", adminUrl()]);
    expect(auditText.stdout.trim().split("\n").map((l) => l.split("\t").slice(1).join("|"))).toEqual([
      `bob|update real@2|revision 4|workload to ${s[1]}`, "alice|update sim@2|revision 3|sims to 10.2.0.0/16",
    ]);
    const listed = await cli(["policy", "list", "--admin", adminUrl()]);
    expect(listed.stdout).toMatch(/^revision 4\n10\tsim@2\tmatch \{"sim":\["yes"\]\}\tmode allowlist\talice: sims to 10\.2\.0\.0\/16\n20\treal@2\t/);
    const daemonsText = await cli(["daemons", "--admin", adminUrl()]);
    expect(daemonsText.stdout).toContain("\n  sim0-0\tveth-sim0-0\tsim@2\n");
  });

  it("killing a replica moves its daemons to the others within 10 s; they converge on the latest version; the workload stays enforced", async () => {
    const ping = startPing(sb, net.workloadNs, s[1]!, 0.02);
    await waitFor(() => ping.replies() > 5, "ping replies", 5000);
    const victim = replicas[0]!; // the first address of the real daemon: it is connected there
    expect((await cpStatus()).controlPlaneAddress).toBe(victim.address);
    const onVictim = sims.daemons.filter((d) => d.addressIndex === 0).length;
    const t0 = Date.now();
    await victim.kill9();
    // Fail-static while the daemon has no control plane: same policy in the kernel.
    await expectReach({ [s[1]!]: true, [s[0]!]: false });
    await waitFor(() => sims.daemons.every((d) => d.synced && d.addressIndex !== 0), "every simulated daemon resynced on another replica", 10_000);
    const movedMs = Date.now() - t0;
    await waitFor(async () => (await daemon.statusJson()).controlPlaneState === CONNECTED, "the real daemon on another replica", 10_000);
    console.log(`fleet failover: ${onVictim} simulated daemons + 1 real moved off the killed replica in ${movedMs} ms`);
    // The next change reaches everyone through the two survivors.
    await putSim("10.3.0.0/16");
    await putReal([s[1]!, s[2]!]);
    await waitFor(() => simsOn("sim@3") === SIMS, "all simulated attachments on sim@3", 20_000);
    await expectReach({ [s[1]!]: true, [s[2]!]: true, [s[0]!]: false });
    const stats = await ping.stop();
    // Allowed before, during and after the failover: nothing dropped (one echo may be in flight at stop).
    expect(stats.received).toBeGreaterThanOrEqual(stats.transmitted - 1);
    await waitFor(async () => {
      const st = await status();
      return st.attachmentsBehind === 0 && st.attachmentsByVersion["sim@3"] === SIMS && st.attachmentsByVersion["real@3"] === 1;
    }, "the database to show every attachment on the latest version", 15_000);
    const st = await status();
    expect(st.replicas.find((r) => r.replicaId === "r0")!.daemons).toBe(0);
  });

  it("a replica restarted from an empty process catches up from the database and serves the latest policy", async () => {
    // A change while r0 is down.
    await putSim("10.4.0.0/16");
    await putReal([s[3]!]);
    await expectReach({ [s[3]!]: true, [s[1]!]: false });
    const serving = await replicas[0]!.start();
    expect(serving).toMatchObject({ replicaId: "r0", policies: 2 });
    const revision = (await status()).revision;
    expect(serving["revision"]).toBe(revision);
    // Kill both others: every daemon ends up on the restarted replica, which pushes what it read.
    const tKill = performance.now();
    await replicas[1]!.kill9();
    await replicas[2]!.kill9();
    await waitFor(() => sims.daemons.every((d) => d.synced && d.addressIndex === 0), "every simulated daemon on the restarted replica", 15_000);
    // The restarted replica reconciles every attachment from what it read: the latest version.
    await waitFor(() => sims.attachments().every((a) => (a.daemon.bulkAt.get(a.id) ?? 0) > tKill), "every attachment reconciled by the restarted replica", 15_000);
    await waitFor(async () => {
      const c = await cpStatus();
      return c.controlPlaneState === CONNECTED && c.controlPlaneAddress === replicas[0]!.address;
    }, "the real daemon on the restarted replica", 20_000);
    expect(simsOn("sim@4")).toBe(SIMS);
    // A change made now, on the restarted replica alone, reaches the real workload.
    await putReal([s[4]!]);
    await waitFor(async () => (await reachability(sb, net.workloadNs, PORT, [s[4]!]))[s[4]!] === true, "s4 opened by real@5", 10_000);
    await expectReach({ [s[4]!]: true, [s[3]!]: false });
    await waitFor(async () => (await status()).attachmentsByVersion["real@5"] === 1, "real@5 acked", 10_000);
  });
});
