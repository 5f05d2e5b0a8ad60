import { afterAll, beforeAll, describe, expect, it } from "vitest";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pino from "pino";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../helpers/sandbox.js";
import { waitFor } from "../helpers/daemon-harness.js";
import { dig, Dnsmasq, E2eDaemon, splitHostPort } from "../helpers/e2e.js";
import { addBridgeHost, addOutsideHost, EventWatcher, Sniffer, type ExtraHost } from "../helpers/security.js";
import { ControlPlaneServer } from "../../sdk/src/index.js";

// Issue 10 item 5 — every DNS server answered anyone. Now an attachment's server answers only its
// own workload: named workload addresses (netfence.workload-ips) → only those; none named → the
// listen address's subnet and the host's addresses. Real daemon, real kernel, dnsmasq upstream:
//
//   A  workload 10.a.b.2, attachment naming its address, packet mode denylist (so that, before
//      the kernel's cross-tenant rule, A's packets do reach B's server: this layer must hold alone)
//   B  workload 10.a.b.3, attachment naming its address, packet mode allowlist
//   C  workload 10.a.b.5, attachment WITHOUT named addresses (the on-link rule)
//   N  10.a.b.4, a neighbour on the same bridge that is not attached at all
//   O  10.a.c.5, a host on another subnet, routed to the DNS listen address 10.a.b.1
//
// Far side: dnsmasq's query log (nothing reaches the upstream), sniffers on the attackers'
// interfaces (no reply ever comes back), B's kernel verdicts (nothing opened in B's map).

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures");
const PORT = 7441;

describe("DNS tenant isolation (real daemon, real kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let upstream: Dnsmasq;
  let daemon: E2eDaemon;
  let cp: ControlPlaneServer;
  let events: EventWatcher;
  let b: ExtraHost;
  let c: ExtraHost;
  let n: ExtraHost;
  let o: ExtraHost;
  const ids: Record<string, string> = {};
  const ports: Record<string, number> = {};
  let dnsHost: string;

  const askFrom = (ns: string, tenant: string, name: string, opts: { tcp?: boolean; timeoutSeconds?: number } = {}) =>
    dig(sb, ns, dnsHost, ports[tenant]!, name, "A", opts);

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfti");
    net = await sb.network({ hostAddress: true });
    b = await addBridgeHost(sb, net, 3);
    n = await addBridgeHost(sb, net, 4);
    c = await addBridgeHost(sb, net, 5);
    o = await addOutsideHost(sb, net);
    await sb.echoServer(net.serverNs, PORT);
    const s = net.serverIp4;
    upstream = await Dnsmasq.start(sb, net.serverNs, s[9]!, [
      { name: "a.iso.test", ipv4: s[0] },
      { name: "b.iso.test", ipv4: s[1] },
      { name: "secret-b.iso.test", ipv4: s[2] },
      { name: "c.iso.test", ipv4: s[3] },
      { name: "neighbour.iso.test", ipv4: s[4] },
      { name: "outside.iso.test", ipv4: s[5] },
      { name: "big.iso.test", ipv4: s[6] },
    ]);
    cp = new ControlPlaneServer({
      logger: pino({ level: "silent" }),
      hooks: {
        onSubscribed: (_d, att) => ({
          mode: att.metadata["tenant"] === "a" ? "denylist" : "allowlist",
          dns: { mode: "allowlist", allow: ["*.iso.test"] },
        }),
      },
    });
    const cpPort = await cp.listen("127.0.0.1:0");
    daemon = new E2eDaemon({
      pinRoot: await sb.pinRoot(),
      dns: { listenAddr: net.hostIp4!, upstream: `${s[9]}:53`, extra: ["quotas: { tcp_per_source: 8, tcp_connections: 32 }"] },
      controlPlane: { url: `127.0.0.1:${cpPort}` },
      metrics: true,
    });
    await daemon.start();
    for (const [tenant, hostIf, ip] of [["a", net.hostIf, net.workloadIp4], ["b", b.hostIf, b.ip4], ["c", c.hostIf, null]] as const) {
      const meta: Record<string, string> = { tenant };
      if (ip !== null) meta["netfence.workload-ips"] = ip;
      const att = await daemon.attachInterface(hostIf, meta);
      ids[tenant] = att.id;
      const hp = splitHostPort(att.dnsAddress);
      dnsHost = hp.host;
      ports[tenant] = hp.port;
    }
    events = await EventWatcher.start(daemon.socket);
  }, 120_000);

  afterAll(async () => {
    await events?.stop();
    for (const id of Object.values(ids)) if (daemon?.alive()) await daemon.cli("detach", "--id", id);
    await daemon?.cleanup();
    await cp?.close(100);
    await upstream?.stop();
    await sb?.cleanup();
  });

  it("each tenant's own workload is answered by its own server (and its answers open its own map)", async () => {
    expect((await askFrom(net.workloadNs, "a", "a.iso.test")).status).toBe("NOERROR");
    expect((await askFrom(b.ns, "b", "b.iso.test")).status).toBe("NOERROR");
    expect((await askFrom(c.ns, "c", "c.iso.test")).status).toBe("NOERROR");
    expect(await probe(sb, b.ns, "tcp", net.serverIp4[1]!, { port: PORT })).toBe(true);
  });

  it("tenant A asking B's server gets no answer, nothing reaches the upstream, nothing opens in B's map", async () => {
    const before = await daemon.counters(ids["b"]!);
    for (const tcp of [false, true]) {
      const r = await askFrom(net.workloadNs, "b", "secret-b.iso.test", { tcp, timeoutSeconds: 1 });
      expect({ tcp, status: r.status }).toEqual({ tcp, status: "TIMEOUT" });
    }
    expect(upstream.asked("secret-b.iso.test")).toBe(false);
    expect(await probe(sb, b.ns, "tcp", net.serverIp4[2]!, { port: PORT })).toBe(false);
    expect((await daemon.counters(ids["b"]!)).dnsAllowed).toBe(before.dnsAllowed);
  });

  it("a neighbour that is not attached and a host on another subnet get no answer from any server — not one packet back", async () => {
    const sniffN = await Sniffer.start(sb, n.ns, n.ifname);
    const sniffO = await Sniffer.start(sb, o.ns, o.ifname);
    try {
      for (const tenant of ["a", "b"]) {
        expect((await askFrom(n.ns, tenant, "neighbour.iso.test", { timeoutSeconds: 1 })).status).toBe("TIMEOUT");
        expect((await askFrom(n.ns, tenant, "neighbour.iso.test", { tcp: true, timeoutSeconds: 1 })).status).toBe("TIMEOUT");
      }
      for (const tenant of ["a", "b", "c"]) {
        expect((await askFrom(o.ns, tenant, "outside.iso.test", { timeoutSeconds: 1 })).status).toBe("TIMEOUT");
      }
      // A burst of small queries from the outside host: no reply of any size, to anyone.
      const flood = JSON.parse((await sb.exec(o.ns, [process.execPath, path.join(FIXTURES, "udp-flood.mjs"), dnsHost, String(ports["c"]), "500", "2000", "big.iso.test", "ANY"], { timeoutMs: 20_000 })).stdout) as { sent: number; replies: number; bytes: number };
      expect(flood.sent).toBeGreaterThan(500);
      expect([flood.replies, flood.bytes]).toEqual([0, 0]);
      const fromDns = (p: { src: string; sport: number; proto: number }) => p.src === dnsHost && Object.values(ports).includes(p.sport) && p.proto === 17;
      expect(sniffN.packets(fromDns)).toEqual([]);
      expect(sniffO.packets(fromDns)).toEqual([]);
      expect(sniffO.packets((p) => p.src === dnsHost && p.len > 100)).toEqual([]);
    } finally {
      await sniffN.stop();
      await sniffO.stop();
    }
    for (const name of ["neighbour.iso.test", "outside.iso.test", "big.iso.test"]) expect({ name, asked: upstream.asked(name) }).toEqual({ name, asked: false });
    // Counted and reported (events folded per source within 10 s).
    const m = await daemon.metrics();
    expect(m.get(`netfence_dns_queries{attachment="${ids["c"]}",outcome="foreign"}`)).toBeGreaterThan(500);
    expect(m.get(`netfence_dns_queries{attachment="${ids["a"]}",outcome="foreign"}`)).toBeGreaterThanOrEqual(1);
    await waitFor(() => events.events((e) => e.reason === "dns-foreign-source" && e.src === o.ip4).length > 0, "a foreign-source event", 5000);
    expect(events.events((e) => e.reason === "dns-foreign-source" && e.src === n.ip4).map((e) => e.attachmentId)).toEqual(expect.arrayContaining([ids["a"], ids["b"]]));
    // The tenants' own queries still work.
    expect((await askFrom(c.ns, "c", "c.iso.test")).status).toBe("NOERROR");
  });

  it("1,000 idle TCP connections from one source do not starve the workload: a few are held, the rest closed at once", async () => {
    const hold = sb.exec(n.ns, ["sh", "-c", `ulimit -n 4096; exec ${process.execPath} ${path.join(FIXTURES, "tcp-hold.mjs")} ${dnsHost} ${ports["c"]} 1000 3000 6000`], { timeoutMs: 30_000 });
    const foreignHold = sb.exec(n.ns, ["sh", "-c", `ulimit -n 4096; exec ${process.execPath} ${path.join(FIXTURES, "tcp-hold.mjs")} ${dnsHost} ${ports["a"]} 1000 3000 6000`], { timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 3500));
    // While the attacker holds its connections: the legitimate workload over TCP and UDP.
    for (let i = 0; i < 3; i++) {
      expect((await askFrom(c.ns, "c", "c.iso.test", { tcp: true })).status).toBe("NOERROR");
      expect((await askFrom(c.ns, "c", "c.iso.test")).status).toBe("NOERROR");
    }
    expect((await askFrom(net.workloadNs, "a", "a.iso.test", { tcp: true })).status).toBe("NOERROR");
    const held = JSON.parse((await hold).stdout) as { open: number; closed: number };
    const foreign = JSON.parse((await foreignHold).stdout) as { open: number; closed: number };
    expect(held.open).toBe(8); // tcp_per_source
    expect(held.closed).toBe(992);
    expect(foreign.open).toBe(0); // not A's workload: every one closed
    const m = await daemon.metrics();
    expect(m.get(`netfence_dns_queries{attachment="${ids["c"]}",outcome="tcp-rejected"}`)).toBeGreaterThanOrEqual(992);
    expect(events.events((e) => e.reason === "dns-quota-tcp" && e.attachmentId === ids["c"] && e.rule === "tcp-per-source").length).toBeGreaterThanOrEqual(1);
  });
});
