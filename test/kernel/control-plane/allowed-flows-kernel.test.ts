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

// Allowed-flow events end to end (issue 14): an attachment made with the option
// `netfence.events=allowed-flows` in its metadata reports the first packet of each new flow; the
// daemon decodes it as verdict "allowed" and forwards it to the control plane as VERDICT_ALLOWED in
// a PacketEventBatch, with the metadata. An attachment without the option reports no allowed flow.

const PORT = 7244;
const silent = pino({ level: "silent" });

describe("allowed-flow events through the daemon and the control plane, on the kernel data path", () => {
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

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("afc");
    net = await sb.network();
    await sb.echoServer(net.serverNs, PORT);
    filter = await startFilter(sb);
    server = new ControlPlaneServer({
      logger: silent,
      commandTimeoutMs: 10_000,
      hooks: {
        onDaemonSynced: (d) => void synced.push(d),
        onSubscribed: () => initial,
        onPacketEvents: (_d, batch) => void events.push(...batch),
      },
    });
    const port = await server.listen("127.0.0.1:0");
    kd = await startKernelDaemon({
      filter, controlPlaneUrl: `127.0.0.1:${port}`, daemonId: "aflow-test", subscribeAckTimeoutMs: 3000,
      dnsPorts: { min: 12_830, max: 12_880 }, forwardEvents: { intervalMs: 100 },
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

  it("the option on: one VERDICT_ALLOWED event per new connection, with the metadata; blocked packets still reported; without the option none", async () => {
    const [a, b, c] = [net.serverIp4[0]!, net.serverIp4[1]!, net.serverIp4[2]!];
    initial = { mode: "allowlist", allow: [`${a}/32`] };
    const view = await manager.attach({
      target: { kind: "interface", name: net.hostIf, direction: "ingress" },
      metadata: { team: "green", "netfence.events": "allowed-flows" },
    });
    const mine = (verdict: Verdict, dst: string) => events.filter((e) => e.attachmentId === view.id && e.dst === dst && e.dstPort === PORT && e.verdict === verdict);

    expect(await reach(a)).toBe(true);
    expect(await reach(a)).toBe(true);
    expect(await reach(b)).toBe(false);
    await waitFor(() => mine(Verdict.BLOCKED, b).length > 0 && mine(Verdict.ALLOWED, a).length >= 2, "the allowed and blocked events at the control plane");
    await new Promise((r) => setTimeout(r, 300)); // a further batch would have been forwarded by now
    const allowed = mine(Verdict.ALLOWED, a);
    expect(allowed).toHaveLength(2); // two connections, each many packets (handshake, data, FIN): one event each
    expect(allowed[0]!.srcPort).not.toBe(allowed[1]!.srcPort);
    expect(allowed[0]).toMatchObject({ protocol: "tcp", reason: "allow-cidr", rule: `${a}/32`, metadata: { team: "green", "netfence.events": "allowed-flows" } });
    expect(mine(Verdict.ALLOWED, b)).toEqual([]);
    await manager.detach(view.id);

    // The same workload, re-attached without the option: allowed connections give no event.
    const plain = await manager.attach({ target: { kind: "interface", name: net.hostIf, direction: "ingress" }, metadata: { team: "green" } });
    expect(await reach(a)).toBe(true);
    expect(await reach(c)).toBe(false); // (another destination than b: the slot may be reused, and b's event is throttled for 10 s)
    await waitFor(() => events.some((e) => e.attachmentId === plain.id && e.dst === c && e.verdict === Verdict.BLOCKED), "the blocked event of the plain attachment");
    expect(events.filter((e) => e.attachmentId === plain.id && e.verdict === Verdict.ALLOWED)).toEqual([]);
  }, 60_000);
});
