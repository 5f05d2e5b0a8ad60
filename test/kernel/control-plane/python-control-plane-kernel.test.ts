import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { startFilter } from "../../helpers/kernel-filter-fixture.js";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import { PythonControlPlane } from "../../compat/python-control-plane.js";
import { startKernelDaemon, type KernelDaemon } from "./kernel-daemon.js";

// Wire compatibility with the real kernel behind it: a control plane in Python grpcio (a
// different gRPC stack, built from the .proto files only, Go-original style: no command_id)
// drives enforcement of a sandbox workload.

const PORT = 7232;

async function waitFor(pred: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("Python grpcio control plane driving the kernel data path", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let py: PythonControlPlane;
  let kd: KernelDaemon;
  const reach = (ip: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 700 });

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("cpy");
    net = await sb.network();
    await sb.echoServer(net.serverNs, PORT);
    filter = await startFilter(sb);
    py = await PythonControlPlane.start({ ackPolicy: { mode: "POLICY_MODE_ALLOWLIST", allowCidrs: [{ cidr: `${net.serverIp4[0]}/32` }] } });
    kd = await startKernelDaemon({
      filter, controlPlaneUrl: `127.0.0.1:${py.port}`, daemonId: "py-kernel", subscribeAckTimeoutMs: 5000,
      dnsPorts: { min: 12_710, max: 12_750 }, heartbeatIntervalMs: 200,
    });
    await py.waitFor(() => py.ofKind("sync").length === 1, "SyncRequest");
  });

  afterAll(async () => {
    await kd?.stop();
    await filter?.close().catch(() => undefined);
    await py?.stop();
    await sb?.cleanup();
  });

  it("attach acked by Python enforces; pushed commands apply; invalid ones change nothing; heartbeats carry counters", async () => {
    const [a, b] = [net.serverIp4[0]!, net.serverIp4[1]!];
    const view = await kd.manager.attach({ target: { kind: "interface", name: net.hostIf, direction: "ingress" }, metadata: { vm: "py" } });
    expect(py.ofKind("subscribed")[0]).toMatchObject({ id: view.id, type: "ATTACHMENT_TYPE_TC", metadata: { vm: "py" } });
    expect(await reach(a)).toBe(true);
    expect(await reach(b)).toBe(false);

    await py.push({ id: view.id, allowCidr: { cidr: `${b}/32` } });
    await waitFor(() => kd.manager.policyOf(view.id).allowCidrs.length === 2, "allow_cidr applied");
    expect(await reach(b)).toBe(true);

    await py.push({ id: view.id, allowCidr: { cidr: "10.0.0.0/99" } }); // invalid, Go-original style
    await py.push({ id: view.id, removeCidr: `${a}/32` });
    await waitFor(() => kd.manager.policyOf(view.id).allowCidrs.length === 1, "remove_cidr applied");
    expect(await reach(a)).toBe(false);
    expect(await reach(b)).toBe(true);
    expect(py.ofKind("commandResult")).toEqual([]); // never set command_id → never answered
    expect(kd.client.state()).toBe("connected");

    await py.waitFor(() => py.ofKind("heartbeat").some((h) => {
      const stats = (h["stats"] as Array<Record<string, unknown>> | undefined) ?? [];
      return stats.some((s) => s["id"] === view.id && Number(s["packetsAllowed"] ?? 0) > 0 && Number(s["packetsBlocked"] ?? 0) > 0);
    }), "heartbeat with allowed and blocked counters");
  });

  it("keeps enforcing while the Python control plane is down and resyncs when it is back", async () => {
    const [a, b] = [net.serverIp4[0]!, net.serverIp4[1]!];
    const id = kd.manager.list()[0]!.id;
    const port = py.port;
    await py.stop();
    await waitFor(() => kd.client.state() !== "connected", "disconnect noticed");
    expect(await reach(a)).toBe(false);
    expect(await reach(b)).toBe(true);
    py = await PythonControlPlane.start({ port });
    await py.waitFor(() => py.ofKind("sync").length === 1, "resync");
    expect((py.ofKind("sync")[0]!["attachments"] as Array<Record<string, unknown>>).map((x) => x["id"])).toEqual([id]);
    await py.push({ id, setMode: { mode: "POLICY_MODE_BLOCK_ALL" } });
    await waitFor(() => kd.manager.get(id).mode === "block-all", "set_mode after resync");
    expect(await reach(b)).toBe(false);
  });
});
