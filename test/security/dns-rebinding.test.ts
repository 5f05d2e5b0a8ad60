import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../helpers/sandbox.js";
import { waitFor } from "../helpers/daemon-harness.js";
import { dig, Dnsmasq, E2eDaemon, splitHostPort } from "../helpers/e2e.js";
import { EventWatcher, hostEchoServer, Sniffer } from "../helpers/security.js";
import { ControlPlaneServer } from "../../sdk/src/index.js";

// Issue 10 item 4 — DNS rebinding: a DNS-learned /32 must never override a deny. The attacker
// owns names (DNS denylist mode: any name not denied resolves) that resolve to the cloud metadata
// address, loopback, the host's own address, or an address the policy denies by CIDR. Real daemon,
// real kernel, dnsmasq as the upstream; the workload sends real TCP connects and a sniffer on the
// far side (the server namespace) shows that nothing arrives, while a legitimate name still opens.
//
// Topology: the workload (10.a.b.2) behind the attached veth; the server namespace holds
// 10.a.b.10-19 and 169.254.169.254/32 (the workload routes it on-link, so the "metadata service"
// is really reachable when the filter lets it through); the host's own address is the bridge
// address 10.a.b.1, where a TCP echo server listens in the root namespace.

const PORT = 7431;

describe("DNS rebinding guard (real daemon, real kernel, dnsmasq upstream)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let upstream: Dnsmasq;
  let daemon: E2eDaemon;
  let cp: ControlPlaneServer;
  let sniffer: Sniffer;
  let events: EventWatcher;
  let hostEcho: Awaited<ReturnType<typeof hostEchoServer>>;
  let id: string;
  let dnsHost: string;
  let dnsPort: number;
  const META = "169.254.169.254";
  const ask = (name: string, type = "A") => dig(sb, net.workloadNs, dnsHost, dnsPort, name, type);
  const reach = (ip: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800 });
  const tcpTo = (ip: string) => sniffer.packets((p) => p.proto === 6 && p.dst === ip && p.dport === PORT);

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfrb");
    net = await sb.network({ hostAddress: true });
    await sb.exec(net.serverNs, ["ip", "addr", "add", `${META}/32`, "dev", "sv0"]);
    await sb.exec(net.workloadNs, ["ip", "route", "add", `${META}/32`, "dev", "wl0"]);
    await sb.echoServer(net.serverNs, PORT);
    hostEcho = await hostEchoServer(net.hostIp4!, PORT);
    const s = net.serverIp4;
    upstream = await Dnsmasq.start(sb, net.serverNs, s[9]!, [
      { name: "legit.rebind.test", ipv4: s[0] },
      { name: "meta.attacker.test", ipv4: META },
      { name: "lo.attacker.test", ipv4: "127.0.0.1" },
      { name: "host.attacker.test", ipv4: net.hostIp4! },
      { name: "denied.attacker.test", ipv4: s[3] },
      { name: "mixed.attacker.test", ipv4: META },
      { name: "mixed.attacker.test", ipv4: s[1] },
      { name: "mapped.attacker.test", ipv6: `::ffff:${META}` },
      { name: "later.attacker.test", ipv4: s[4] },
      { name: "alias.attacker.test", cname: "meta.attacker.test" },
    ]);
    cp = new ControlPlaneServer({
      logger: pino({ level: "silent" }),
      hooks: {
        // Allowlist for packets (everything not opened is blocked), denylist for names: the
        // attacker's names all resolve; only the guard stands between them and an opened address.
        onSubscribed: () => ({ mode: "allowlist", deny: [`${s[3]}/32`], dns: { mode: "denylist", deny: ["*.blocked.test"] } }),
      },
    });
    const cpPort = await cp.listen("127.0.0.1:0");
    daemon = new E2eDaemon({
      pinRoot: await sb.pinRoot(),
      dns: { listenAddr: net.hostIp4!, upstream: `${s[9]}:53`, minTtl: "60s" },
      controlPlane: { url: `127.0.0.1:${cpPort}` },
      metrics: true,
    });
    await daemon.start();
    const a = await daemon.attachInterface(net.hostIf);
    id = a.id;
    ({ host: dnsHost, port: dnsPort } = splitHostPort(a.dnsAddress));
    sniffer = await Sniffer.start(sb, net.serverNs, "sv0");
    events = await EventWatcher.start(daemon.socket);
  }, 120_000);

  afterAll(async () => {
    await events?.stop();
    await sniffer?.stop();
    await hostEcho?.close();
    if (daemon?.alive() && id) await daemon.cli("detach", "--id", id);
    await daemon?.cleanup();
    await cp?.close(100);
    await upstream?.stop();
    await sb?.cleanup();
  });

  it("a legitimate name still resolves and opens its address (the fence works at all)", async () => {
    expect(await reach(net.serverIp4[0]!)).toBe(false);
    const r = await ask("legit.rebind.test");
    expect(r.answers.map((a) => a.data)).toEqual([net.serverIp4[0]]);
    expect(await reach(net.serverIp4[0]!)).toBe(true);
  });

  it("names resolving to the metadata address, the host's own address or a denied CIDR open nothing: the packets never arrive", async () => {
    const targets = { "meta.attacker.test": META, "host.attacker.test": net.hostIp4!, "denied.attacker.test": net.serverIp4[3]! };
    for (const [name, ip] of Object.entries(targets)) {
      const r = await ask(name);
      // The workload gets NOERROR with the address taken out: it only sees what it may reach.
      expect({ name, status: r.status, answers: r.answers }).toEqual({ name, status: "NOERROR", answers: [] });
      expect(upstream.asked(name)).toBe(true);
    }
    const acceptedBefore = hostEcho.accepted();
    for (const ip of Object.values(targets)) expect({ ip, reachable: await reach(ip) }).toEqual({ ip, reachable: false });
    // Far side: not one TCP packet to the metadata address or the denied server reached the server
    // namespace; the host's echo server accepted nothing.
    expect(tcpTo(META)).toEqual([]);
    expect(tcpTo(net.serverIp4[3]!)).toEqual([]);
    expect(hostEcho.accepted()).toBe(acceptedBefore);
  });

  it("loopback and v4-mapped answers are taken out of the reply too (the DNS layer; see the report for the cgroup kernel check)", async () => {
    expect((await ask("lo.attacker.test")).answers).toEqual([]);
    const mapped = await ask("mapped.attacker.test", "AAAA");
    expect(mapped.status).toBe("NOERROR");
    expect(mapped.answers).toEqual([]);
  });

  it("an answer mixing a forbidden and an allowed address keeps (and opens) only the allowed one; a CNAME to a forbidden target opens nothing", async () => {
    const r = await ask("mixed.attacker.test");
    expect(r.answers.map((a) => a.data)).toEqual([net.serverIp4[1]]);
    expect(await reach(net.serverIp4[1]!)).toBe(true);
    const alias = await ask("alias.attacker.test");
    expect(alias.answers.map((a) => [a.type, a.data])).toEqual([["CNAME", "meta.attacker.test."]]);
    expect(await reach(META)).toBe(false);
    expect(tcpTo(META)).toEqual([]);
  });

  it("every refusal is reported: an event per address on the daemon's event stream, a metric by reason, a log line", async () => {
    await waitFor(() => events.events((e) => e.reason === "dns-rebind-guard").length >= 5, "dns-rebind-guard events", 10_000);
    const guard = events.events((e) => e.reason === "dns-rebind-guard").map((e) => [e.dst, e.rule]);
    expect(guard).toEqual(expect.arrayContaining([
      [META, "meta.attacker.test"], [net.hostIp4, "host.attacker.test"], [net.serverIp4[3], "denied.attacker.test"],
      ["127.0.0.1", "lo.attacker.test"], [META, "mixed.attacker.test"],
    ]));
    expect(events.events((e) => e.reason === "dns-rebind-guard").every((e) => e.attachmentId === id)).toBe(true);
    const m = await daemon.metrics();
    expect(m.get('netfence_dns_learned_refused_total{reason="metadata"}')).toBeGreaterThanOrEqual(2);
    expect(m.get('netfence_dns_learned_refused_total{reason="host-address"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('netfence_dns_learned_refused_total{reason="deny-cidr"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('netfence_dns_learned_refused_total{reason="loopback"}')).toBeGreaterThanOrEqual(1);
    expect(m.get(`netfence_dns_queries{attachment="${id}",outcome="addresses-refused"}`)).toBeGreaterThanOrEqual(5);
    expect(daemon.log()).toMatch(/"reason":"metadata".*DNS answer address not opened/);
  });

  it("a deny CIDR added later closes an address already learned (the learned /32 no longer wins)", async () => {
    const ip = net.serverIp4[4]!;
    expect((await ask("later.attacker.test")).answers.map((a) => a.data)).toEqual([ip]);
    expect(await reach(ip)).toBe(true);
    const handle = cp.daemonOf(id)!;
    expect(await handle.denyCidr(id, `${net.subnet4}.0/28`)).toMatchObject({ applied: true });
    const before = tcpTo(ip).length;
    expect(await reach(ip)).toBe(false);
    expect(tcpTo(ip).length).toBe(before);
    await waitFor(() => events.events((e) => e.reason === "dns-rebind-guard" && e.dst === ip).length > 0, "the re-check event", 10_000);
    // Asking again does not bring it back.
    expect((await ask("later.attacker.test")).answers).toEqual([]);
    expect(await reach(ip)).toBe(false);
  });

  it("denylist packet mode with deny CIDRs: an attacker's answer cannot punch a /32 through them", async () => {
    const handle = cp.daemonOf(id)!;
    expect(await handle.bulkUpdate(id, {
      mode: "denylist",
      deny: ["169.254.0.0/16", `${net.serverIp4[5]}/32`, `${net.hostIp4}/32`],
      dns: { mode: "denylist", deny: ["*.blocked.test"], upstreams: [`${net.serverIp4[9]}:53`] },
    })).toMatchObject({ applied: true });
    // Denylist mode: an unrelated address passes, the denied ones do not.
    expect(await reach(net.serverIp4[6]!)).toBe(true);
    await expect(Promise.all([reach(META), reach(net.hostIp4!)])).resolves.toEqual([false, false]);
    for (const name of ["meta.attacker.test", "host.attacker.test"]) expect((await ask(name)).answers).toEqual([]);
    const before = { meta: tcpTo(META).length, host: hostEcho.accepted() };
    await expect(Promise.all([reach(META), reach(net.hostIp4!)])).resolves.toEqual([false, false]);
    expect(tcpTo(META).length).toBe(before.meta);
    expect(hostEcho.accepted()).toBe(before.host);
  });
});
