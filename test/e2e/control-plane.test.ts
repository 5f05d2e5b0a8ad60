import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readdirSync } from "node:fs";
import pino from "pino";
import { probe, requireKernel, Sandbox, sh, type SandboxNetwork } from "../helpers/sandbox.js";
import { waitFor } from "../helpers/daemon-harness.js";
import { E2eDaemon, NetfenceCpProcess, reachability, startPing } from "../helpers/e2e.js";
import { ControlPlaneServer, type AttachmentInfo, type AttachmentStatsInfo, type DaemonHandle } from "../../sdk/src/index.js";

// Issue 5, end to end: the real `netfenced` process and CLI against two control planes — the
// `netfence-cp` binary driven by a YAML policy file (hot reload, kill -9 and restart), and a
// small in-process SDK control plane for what netfence-cp cannot show (an ack that never comes,
// heartbeat contents, the attachment ids in a SyncRequest after a daemon crash). Real kernel,
// real packets between sandbox namespaces.

const PORT = 7421;
const CONNECTED = "CONNECTION_STATE_CONNECTED";

function policyYaml(s: readonly string[], web: readonly string[]): string {
  return [
    "defaults:",
    "  mode: block-all",
    "rules:",
    "  - name: db",
    "    match: {role: db}",
    "    mode: allowlist",
    `    allow: [${s[2]}]`,
    "  - name: web",
    "    match: {role: web}",
    "    mode: allowlist",
    "    allow:",
    ...web.map((entry) => `      - ${entry}`),
    "",
  ].join("\n");
}

function pingStats(output: string): { transmitted: number; received: number } {
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output);
  if (!m) throw new Error(`cannot parse ping output: ${output}`);
  return { transmitted: Number(m[1]), received: Number(m[2]) };
}

describe("control plane, end to end: netfence-cp (YAML policy) and the real daemon", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let cp: NetfenceCpProcess;
  let daemon: E2eDaemon;
  let webId = "";
  let s: readonly string[];

  const reach = (ip: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800 });
  const expectReach = async (want: Record<string, boolean>) => expect(await reachability(sb, net.workloadNs, PORT, Object.keys(want))).toEqual(want);
  const applied = (id: string, since = 0) => cp.logLines(since).filter((l) => l["msg"] === "BulkUpdate applied" && l["attachmentId"] === id).length;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfcp");
    net = await sb.network();
    s = net.serverIp4;
    await sb.echoServer(net.serverNs, PORT);
    cp = new NetfenceCpProcess(policyYaml(s, [s[0]!, s[1]!]));
    await cp.start();
    daemon = new E2eDaemon({
      pinRoot: await sb.pinRoot(),
      dns: { listenAddr: "127.0.0.1", upstream: "127.0.0.1:9" },
      controlPlane: { url: `127.0.0.1:${cp.port}`, ackTimeout: "3s", heartbeat: "1s" },
    });
    await daemon.start();
    await waitFor(async () => (await daemon.statusJson()).controlPlaneState === CONNECTED, "daemon connected to netfence-cp", 15_000);
  }, 120_000);

  afterAll(async () => {
    await daemon?.cleanup();
    await cp?.cleanup();
    await sb?.cleanup();
  });

  it("attach is acked and enforcing; the metadata label selects the rule", async () => {
    const db = await daemon.attachInterface(net.hostIf, { role: "db" });
    expect(cp.logLines().find((l) => l["msg"] === "initial policy" && l["attachmentId"] === db.id)).toMatchObject({ rule: "db", mode: "allowlist" });
    await expectReach({ [s[2]!]: true, [s[0]!]: false });
    expect((await daemon.cli("detach", "--id", db.id)).code).toBe(0);
    await waitFor(() => cp.logLines().some((l) => l["msg"] === "attachment gone" && l["attachmentId"] === db.id && l["reason"] === "detached"), "Unsubscribed(DETACHED) at netfence-cp", 10_000);

    const web = await daemon.attachInterface(net.hostIf, { role: "web" });
    webId = web.id;
    expect(cp.logLines().find((l) => l["msg"] === "initial policy" && l["attachmentId"] === webId)).toMatchObject({ rule: "web", mode: "allowlist" });
    // Attach returned after the SubscribedAck was applied: enforcing right away.
    await expectReach({ [s[0]!]: true, [s[1]!]: true, [s[2]!]: false });
    const listed = await daemon.listJson();
    expect(listed).toEqual([expect.objectContaining({ id: webId, target: net.hostIf, mode: "POLICY_MODE_ALLOWLIST", metadata: { role: "web" } })]);
  });

  it("a policy file edit is hot-reloaded and pushed as one BulkUpdate, with zero drops for a destination allowed before and after", async () => {
    const before = await daemon.counters(webId);
    const seen = applied(webId);
    let pingDone = false;
    // 1000 echo requests at 5 ms intervals to s0, allowed before and after the change.
    const ping = sb.exec(net.workloadNs, ["ping", "-n", "-q", "-i", "0.005", "-c", "1000", "-W", "2", s[0]!], { allowFail: true, timeoutMs: 40_000 }).finally(() => {
      pingDone = true;
    });
    await waitFor(async () => (await daemon.counters(webId)).allowed > before.allowed + 20, "the ping flood to start", 10_000);
    cp.writePolicy(policyYaml(s, [s[0]!, s[3]!])); // s1 out, s3 in
    await waitFor(() => applied(webId) > seen, "netfence-cp to push the BulkUpdate", 15_000);
    const pushedDuringPing = !pingDone;
    const out = await ping;
    const stats = pingStats(out.stdout);
    expect(pushedDuringPing).toBe(true);
    expect(stats.transmitted).toBe(1000);
    expect(stats.received).toBe(1000);
    const after = await daemon.counters(webId);
    expect(after.blocked - before.blocked).toBe(0);
    // The new policy is the whole policy: s3 opened, s1 closed, s0 untouched.
    await expectReach({ [s[3]!]: true, [s[1]!]: false, [s[0]!]: true });
  });

  it("an invalid policy file is rejected and the last good policy stays enforced", async () => {
    const offset = cp.logOffset();
    cp.writePolicy("rules:\n  - name: web\n    match: {role: web}\n    mode: sideways\n");
    await waitFor(() => cp.logLines(offset).some((l) => l["msg"] === "policy file rejected; keeping the last good policy"), "the rejection", 15_000);
    const rejected = cp.logLines(offset).find((l) => l["msg"] === "policy file rejected; keeping the last good policy")!;
    expect(String(rejected["err"])).toMatch(/policy\.yaml:4:\d+: .*mode must be one of/);
    await expectReach({ [s[0]!]: true, [s[3]!]: true, [s[1]!]: false });
  });

  it("a CIDR with a ttl opens on push and closes by itself when the ttl runs out", async () => {
    expect(await reach(s[4]!)).toBe(false);
    const seen = applied(webId);
    cp.writePolicy(policyYaml(s, [s[0]!, s[3]!, `{cidr: ${s[4]}, ttl: 4s}`]));
    await waitFor(() => applied(webId) > seen, "netfence-cp to push the BulkUpdate", 15_000);
    expect(await reach(s[4]!)).toBe(true);
    await waitFor(async () => !(await reach(s[4]!)), "the CIDR's ttl to expire", 20_000);
    // Only that entry went away.
    await expectReach({ [s[0]!]: true, [s[4]!]: false });
    // Back to the plain policy (a resync would otherwise push the ttl entry again).
    const seen2 = applied(webId);
    cp.writePolicy(policyYaml(s, [s[0]!, s[3]!]));
    await waitFor(() => applied(webId) > seen2, "netfence-cp to push the BulkUpdate", 15_000);
  });

  it("control plane killed → enforcement unchanged (fail-static) → restarted → resync lists the attachment", async () => {
    // Continuous traffic through the outage, the reconnect and the reconciling BulkUpdate.
    const allowedPing = startPing(sb, net.workloadNs, s[0]!);
    const blockedPing = startPing(sb, net.workloadNs, s[1]!);
    await waitFor(() => allowedPing.replies() >= 20, "the ping to s0 to run", 10_000);
    await cp.kill9();
    await waitFor(async () => (await daemon.statusJson()).controlPlaneState !== CONNECTED, "the daemon to notice the control plane is gone", 15_000);
    await expectReach({ [s[0]!]: true, [s[3]!]: true, [s[1]!]: false, [s[2]!]: false });
    expect((await daemon.listJson()).map((a) => [a.id, a.mode])).toEqual([[webId, "POLICY_MODE_ALLOWLIST"]]);
    // A new attach cannot be acked while the control plane is gone: it fails and leaves nothing.
    const cg = await sb.cgroup();
    const attempt = await daemon.cli("attach", "-g", cg, "--metadata", "role=web");
    expect(attempt.code).not.toBe(0);
    expect(attempt.stderr).toMatch(/^Error: .+\n$/);
    expect((await daemon.listJson()).map((a) => a.id)).toEqual([webId]);
    expect(readdirSync(daemon.opts.pinRoot).filter((n) => n.startsWith("nf-"))).toEqual([webId]);

    const offset = cp.logOffset();
    await cp.start(); // same port
    await waitFor(async () => (await daemon.statusJson()).controlPlaneState === CONNECTED, "the daemon to reconnect", 30_000);
    const status = await daemon.statusJson();
    await waitFor(() => cp.logLines(offset).some((l) => l["msg"] === "daemon reconciled"), "netfence-cp to reconcile the daemon", 15_000);
    const synced = cp.logLines(offset).find((l) => l["msg"] === "daemon synced")!;
    expect(synced).toMatchObject({ daemonId: status.daemonId, attachments: 1 });
    // The fresh netfence-cp knows the attachment only from the SyncRequest, and reconciles exactly it.
    const pushed = cp.logLines(offset).filter((l) => l["msg"] === "BulkUpdate applied").map((l) => l["attachmentId"]);
    expect(pushed.length).toBeGreaterThanOrEqual(1);
    expect(new Set(pushed)).toEqual(new Set([webId]));
    const [allowed, blocked] = await Promise.all([allowedPing.stop(), blockedPing.stop()]);
    expect(allowed.transmitted).toBeGreaterThan(100);
    expect(allowed.transmitted - allowed.received).toBeLessThanOrEqual(1); // at most the one in flight at stop
    expect(blocked.transmitted).toBeGreaterThan(100);
    expect(blocked.received).toBe(0);
    await expectReach({ [s[0]!]: true, [s[1]!]: false });
  });
});

describe("control plane, end to end: SDK control plane observing the real daemon", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let server: ControlPlaneServer;
  let daemon: E2eDaemon;
  let pinRoot: string;
  let s: readonly string[];
  const synced: { daemonId: string; attachments: string[]; handle: DaemonHandle }[] = [];
  const heartbeats: { stats: readonly AttachmentStatsInfo[] }[] = [];
  const subscribedMetadata: Record<string, string>[] = [];
  const subscribedInfo: AttachmentInfo[] = [];
  const unsubscribed: { attachmentId: string; reason: string }[] = [];

  const reach = (ip: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800 });
  const expectReach = async (want: Record<string, boolean>) => expect(await reachability(sb, net.workloadNs, PORT, Object.keys(want))).toEqual(want);

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfcq");
    net = await sb.network();
    s = net.serverIp4;
    await sb.echoServer(net.serverNs, PORT);
    server = new ControlPlaneServer({
      logger: pino({ level: "silent" }),
      hooks: {
        onDaemonSynced: (d) => void synced.push({ daemonId: d.daemonId, attachments: [...d.attachments.keys()], handle: d }),
        onSubscribed: (_d, a) => {
          subscribedMetadata.push({ ...a.metadata });
          subscribedInfo.push(a);
          // A control plane that never acks this attachment (throwing sends no SubscribedAck).
          if (a.metadata["ack"] === "never") throw new Error("not acking");
          if (a.metadata["role"] === "sandboxed") return { mode: "block-all" };
          return { mode: "allowlist", allow: [`${s[0]}/32`] };
        },
        onHeartbeat: (_d, stats) => void heartbeats.push({ stats }),
        onUnsubscribed: (_d, attachmentId, reason) => void unsubscribed.push({ attachmentId, reason }),
      },
    });
    const port = await server.listen("127.0.0.1:0");
    pinRoot = await sb.pinRoot();
    daemon = new E2eDaemon({
      pinRoot,
      dns: { listenAddr: "127.0.0.1", upstream: "127.0.0.1:9" },
      controlPlane: { url: `127.0.0.1:${port}`, ackTimeout: "2s", heartbeat: "500ms" },
    });
    await daemon.start();
    await waitFor(() => synced.length === 1, "the daemon's SyncRequest", 15_000);
  }, 120_000);

  afterAll(async () => {
    await daemon?.cleanup();
    await server?.close(100);
    await sb?.cleanup();
  });

  it("no SubscribedAck within subscribe_ack_timeout: attach fails and is rolled back completely", async () => {
    const r = await daemon.cli("attach", "-i", net.hostIf, "--metadata", "ack=never");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^Error: .*SubscribedAck.*\n$/);
    expect(subscribedMetadata).toContainEqual({ ack: "never" });
    // No filter left: no attachment directory under the pin root, nothing listed, traffic unfiltered.
    expect(readdirSync(pinRoot).filter((n) => n.startsWith("nf-"))).toEqual([]);
    expect((await daemon.cli("list")).stdout).toBe("No attachments.\n");
    expect((await daemon.statusJson()).attachmentCount).toBe(0);
    await expectReach({ [s[1]!]: true, [s[2]!]: true });
  });

  let id = "";

  it("Subscribed describes the attachment; heartbeats carry its packet counters", async () => {
    const attached = await daemon.attachInterface(net.hostIf, { role: "web" });
    id = attached.id;
    expect(subscribedInfo.find((a) => a.id === id)).toMatchObject({
      target: net.hostIf, type: "interface", dnsAddress: attached.dnsAddress, metadata: { role: "web" },
    });
    await expectReach({ [s[0]!]: true, [s[1]!]: false });
    const listed = await daemon.counters(id);
    expect(listed.allowed).toBeGreaterThan(0);
    expect(listed.blocked).toBeGreaterThan(0);
    const from = heartbeats.length;
    const statsOf = (i: number) => heartbeats[i]?.stats.find((x) => x.id === id);
    await waitFor(() => {
      for (let i = from; i < heartbeats.length; i++) {
        const st = statsOf(i);
        if (st && st.packetsAllowed >= BigInt(listed.allowed) && st.packetsBlocked >= BigInt(listed.blocked)) return true;
      }
      return false;
    }, "a heartbeat with the counters", 10_000);
    // Heartbeats keep coming, every interval.
    const n = heartbeats.length;
    await waitFor(() => heartbeats.length >= n + 2, "two more heartbeats", 10_000);
  });

  it("daemon kill -9 → enforcement continues → restart with the same data_dir and pin root → SyncRequest lists the same ids", async () => {
    // A second attachment, a cgroup whose processes may send nothing at all.
    const cg = await sb.cgroup();
    const r = await daemon.cli("attach", "-g", cg, "--metadata", "role=sandboxed");
    expect(r.code).toBe(0);
    const cgId = /^ID: (\S+)$/m.exec(r.stdout)![1]!;
    const reachFromCgroup = (ip: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800, cgroup: cg });
    // The picture both filters give: s0 open for the workload, closed for the cgroup's processes; s1 closed.
    const expectEnforced = async () => {
      const [fromCgroup] = await Promise.all([reachFromCgroup(s[0]!), expectReach({ [s[0]!]: true, [s[1]!]: false })]);
      expect(fromCgroup).toBe(false);
    };
    await expectEnforced();
    const first = synced[synced.length - 1]!;
    expect(first.handle.attachments.has(id)).toBe(true);

    // Continuous traffic across the crash and the restart (re-adoption): the allowed destination
    // loses nothing, the blocked one gets nothing through — at no moment is the filter missing.
    const allowedPing = startPing(sb, net.workloadNs, s[0]!);
    const blockedPing = startPing(sb, net.workloadNs, s[1]!);
    await waitFor(() => allowedPing.replies() >= 20, "the ping to s0 to run", 10_000);
    await daemon.kill9();
    // Nobody is running the daemon now; the pinned filters keep enforcing.
    await expectEnforced();

    const count = synced.length;
    await daemon.start();
    await waitFor(() => synced.length > count, "the restarted daemon's SyncRequest", 20_000);
    const again = synced[synced.length - 1]!;
    expect(again.daemonId).toBe(first.daemonId);
    expect([...again.attachments].sort()).toEqual([id, cgId].sort());
    await expectEnforced();
    const [allowed, blocked] = await Promise.all([allowedPing.stop(), blockedPing.stop()]);
    expect(allowed.transmitted).toBeGreaterThan(100);
    expect(allowed.transmitted - allowed.received).toBeLessThanOrEqual(1); // at most the one in flight at stop
    expect(blocked.transmitted).toBeGreaterThan(100);
    expect(blocked.received).toBe(0);
    // The re-adopted attachment still takes commands.
    expect(await again.handle.setMode(id, "block-all")).toMatchObject({ applied: true });
    expect(await reach(s[0]!)).toBe(false);
    expect((await daemon.listJson()).map((a) => [a.id, a.mode]).sort()).toEqual([[id, "POLICY_MODE_BLOCK_ALL"], [cgId, "POLICY_MODE_BLOCK_ALL"]].sort());
  });

  it("the interface disappearing → Unsubscribed(REMOVED) and the attachment is gone", async () => {
    expect(id).not.toBe("");
    // The workload's host-side veth goes away (the VM was destroyed); the daemon notices by itself.
    await sh("ip", ["link", "del", net.hostIf]);
    await waitFor(() => unsubscribed.some((u) => u.attachmentId === id && u.reason === "removed"), "Unsubscribed(REMOVED)", 15_000);
    expect((await daemon.listJson()).map((a) => a.id)).not.toContain(id);
    expect(readdirSync(pinRoot)).not.toContain(id);
  });
});
