import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import type { AttachmentManager } from "../../../daemon/src/attachments/manager.js";
import { Verdict, type PacketEvent } from "@netfence/proto/control";
import { startKernelDaemon, type KernelDaemon } from "./kernel-daemon.js";
import { ControlPlaneServer, type DaemonHandle, type PolicySpec } from "../../../sdk/src/index.js";
import { startFilter } from "../../helpers/kernel-filter-fixture.js";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import { waitFor } from "../../helpers/daemon-harness.js";

// Audit mode set by a control plane (SubscribedAck.audit, SetMode.audit, BulkUpdate.audit), on real
// packets: what the policy would block reaches the far side (the echo server answers) and the control
// plane receives it as a "would block" (VERDICT_AUDIT) event in a PacketEventBatch, with the
// attachment's metadata; switching audit off blocks again.

const PORT = 7243;
const silent = pino({ level: "silent" });

describe("audit mode from the control plane, on the kernel data path", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let manager: AttachmentManager;
  let kd: KernelDaemon | undefined;
  let server: ControlPlaneServer;
  const synced: DaemonHandle[] = [];
  const events: PacketEvent[] = [];
  let initial: PolicySpec = { mode: "block-all" };

  const reach = (ip: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 700 });
  const daemon = (): DaemonHandle => synced[synced.length - 1]!;
  const eventFor = (dst: string, verdict: Verdict) => events.find((e) => e.dst === dst && e.dstPort === PORT && e.verdict === verdict);

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("aud");
    net = await sb.network();
    await sb.echoServer(net.serverNs, PORT);
    filter = await startFilter(sb);
    server = new ControlPlaneServer({
      logger: silent,
      commandTimeoutMs: 10_000,
      hooks: {
        onDaemonSynced: (d) => void synced.push(d),
        onSubscribed: () => initial,
        onPacketEvents: (_d, batch) => void events.push(...batch), // set: the SDK asks for events (SyncAck.packet_events)
      },
    });
    const port = await server.listen("127.0.0.1:0");
    kd = await startKernelDaemon({
      filter, controlPlaneUrl: `127.0.0.1:${port}`, daemonId: "audit-test", subscribeAckTimeoutMs: 3000,
      dnsPorts: { min: 12_710, max: 12_760 }, forwardEvents: { intervalMs: 100 },
    });
    manager = kd.manager;
    await waitFor(() => synced.length === 1, "daemon synced");
  });

  afterAll(async () => {
    await kd?.stop();
    await filter?.close().catch(() => undefined);
    await server?.close(100).catch(() => undefined);
    await sb?.cleanup();
  });

  it("lets what the policy would block through, reports it as 'would block' with the metadata, and blocks again when switched off", async () => {
    const [a, b, c, d] = [net.serverIp4[0]!, net.serverIp4[1]!, net.serverIp4[2]!, net.serverIp4[3]!];
    initial = { mode: "allowlist", allow: [`${a}/32`], audit: true };
    const view = await manager.attach({ target: { kind: "interface", name: net.hostIf, direction: "ingress" }, metadata: { team: "blue" } });
    expect(manager.get(view.id)).toMatchObject({ mode: "allowlist", audit: true });

    // Audit on: b is not in the allowlist, yet the far side answers; the control plane hears "would block".
    expect(await reach(a)).toBe(true);
    expect(await reach(b)).toBe(true);
    await waitFor(() => eventFor(b, Verdict.AUDIT) !== undefined, "the audit event at the control plane");
    expect(eventFor(b, Verdict.AUDIT)).toMatchObject({ attachmentId: view.id, protocol: "tcp", reason: "not-in-allowlist", metadata: { team: "blue" } });
    expect(eventFor(a, Verdict.AUDIT)).toBeUndefined(); // allowed traffic is not reported
    expect((await manager.stats()).find((s) => s.id === view.id)!.packetsAudited).toBeGreaterThan(0n);

    // Audit off (SetMode with the field): b is dropped again and reported as blocked.
    expect(await daemon().setMode(view.id, "allowlist", false)).toMatchObject({ applied: true });
    expect(await reach(b)).toBe(false);
    expect(await reach(c)).toBe(false);
    expect(await reach(a)).toBe(true);
    await waitFor(() => eventFor(c, Verdict.BLOCKED) !== undefined, "the blocked event at the control plane");

    // A SetMode without the field (a Go-original control plane) keeps audit as it is: on stays on.
    expect(await daemon().setMode(view.id, "allowlist", true)).toMatchObject({ applied: true });
    expect(await reach(d)).toBe(true);
    expect(await daemon().setMode(view.id, "allowlist")).toMatchObject({ applied: true });
    expect(manager.get(view.id).audit).toBe(true);
    expect(await reach(d)).toBe(true);

    // A BulkUpdate restates the policy: without audit it enforces again.
    expect(await daemon().bulkUpdate(view.id, { mode: "allowlist", allow: [`${a}/32`] })).toMatchObject({ applied: true });
    expect(manager.get(view.id).audit).toBe(false);
    expect(await reach(d)).toBe(false);
    expect(await reach(b)).toBe(false);
    expect(await reach(a)).toBe(true);
  }, 60_000);
});
