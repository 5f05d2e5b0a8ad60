import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../helpers/sandbox.js";
import { waitFor } from "../helpers/daemon-harness.js";
import { dig, Dnsmasq, E2eDaemon, sleep, splitHostPort, type DnsRecord } from "../helpers/e2e.js";
import { ControlPlaneServer } from "../../sdk/src/index.js";

// Issue 13, the answer cache end to end: the real `netfenced` (dist/), the real kernel and real
// packets. The workload namespace asks the attachment's DNS server with dig and connects to the
// answers; the upstream is our own dnsmasq, whose query log shows every query that reached it.
// The policy comes from an in-process SDK control plane (allowlist, DNS allowlist), which later
// pushes a deny CIDR and a deny domain for names already cached.

const PORT = 7413;

describe("DNS answer cache, end to end (real daemon, dnsmasq upstream, real kernel)", () => {
  let sb: Sandbox;
  let sbPins: Sandbox;
  let net: SandboxNetwork;
  let upstream: Dnsmasq;
  let daemon: E2eDaemon;
  let cp: ControlPlaneServer;
  let id: string;
  let dnsHost: string;
  let dnsPort: number;
  const ask = (name: string, type = "A") => dig(sb, net.workloadNs, dnsHost, dnsPort, name, type);
  const reach = (ip: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800 });
  /** Asks a name never asked before and waits until it is in the upstream's log: the log is current. */
  let markers = 0;
  const logCurrent = async (): Promise<void> => {
    const marker = `m${markers++}.cache.test`;
    expect((await ask(marker)).status).toBe("NOERROR");
    await waitFor(() => upstream.count(marker, "A") === 1, "the marker query in the dnsmasq log", 5000);
  };

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfdc");
    net = await sb.network({ hostAddress: true });
    await sb.echoServer(net.serverNs, PORT);
    const s = net.serverIp4;
    const records: DnsRecord[] = [
      { name: "repeat.cache.test", ipv4: s[0] },
      { name: "short.cache.test", ipv4: s[1], ttl: 3 },
      { name: "denycidr.cache.test", ipv4: s[2] },
      { name: "denyname.cache.test", ipv4: s[3] },
      ...Array.from({ length: 12 }, (_, i) => ({ name: `m${i}.cache.test`, ipv4: s[4] })),
    ];
    upstream = await Dnsmasq.start(sb, net.serverNs, s[9]!, records);
    cp = new ControlPlaneServer({
      logger: pino({ level: "silent" }),
      hooks: {
        onSubscribed: () => ({ mode: "allowlist", dns: { mode: "allowlist", allow: ["*.cache.test"], upstreams: [`${s[9]}:53`] } }),
      },
    });
    const cpPort = await cp.listen("127.0.0.1:0");
    sbPins = await Sandbox.create("nfdcp");
    daemon = new E2eDaemon({
      pinRoot: await sbPins.pinRoot(),
      dns: { listenAddr: net.hostIp4!, upstream: "127.0.0.1:9", minTtl: "1s" },
      controlPlane: { url: `127.0.0.1:${cpPort}`, ackTimeout: "5s" },
      metrics: true,
    });
    await daemon.start();
    await waitFor(async () => (await daemon.statusJson()).controlPlaneState === "CONNECTION_STATE_CONNECTED", "daemon connected to the control plane", 15_000);
    const a = await daemon.attachInterface(net.hostIf, { vm: "dns-cache" });
    id = a.id;
    ({ host: dnsHost, port: dnsPort } = splitHostPort(a.dnsAddress));
  }, 120_000);

  afterAll(async () => {
    if (daemon?.alive() && id) await daemon.cli("detach", "--id", id);
    await daemon?.cleanup();
    await cp?.close(100);
    await upstream?.stop();
    await sbPins?.cleanup();
    await sb?.cleanup();
  });

  const cachedCount = async (): Promise<number> => (await daemon.metrics()).get(`netfence_dns_queries{attachment="${id}",outcome="cached"}`) ?? 0;

  it("a repeated query is answered from the cache: the upstream sees one query, not two, and the address is open", async () => {
    const ip = net.serverIp4[0]!;
    expect(await reach(ip)).toBe(false);
    const first = await ask("repeat.cache.test");
    expect(first.answers.map((a) => a.data)).toEqual([ip]);
    const cachedBefore = await cachedCount();
    const second = await ask("repeat.cache.test");
    expect(second.status).toBe("NOERROR");
    expect(second.answers.map((a) => a.data)).toEqual([ip]);
    await logCurrent();
    expect(upstream.count("repeat.cache.test", "A")).toBe(1);
    expect(await cachedCount()).toBe(cachedBefore + 1);
    expect(await reach(ip)).toBe(true);
  });

  it("an expired TTL goes upstream again (dnsmasq TTL 3 s), and the re-asked answer opens the address again", async () => {
    const ip = net.serverIp4[1]!;
    expect((await ask("short.cache.test")).answers.map((a) => a.data)).toEqual([ip]);
    const cached = await ask("short.cache.test");
    expect(cached.answers[0]?.ttl).toBeLessThanOrEqual(3);
    await logCurrent();
    expect(upstream.count("short.cache.test", "A")).toBe(1);
    // The kernel entry (max(TTL 3 s, min_ttl 1 s)) runs out; the cache entry ran out before it.
    await waitFor(async () => !(await reach(ip)), "the TTL to expire and the address to be blocked", 20_000);
    await sleep(200);
    expect((await ask("short.cache.test")).answers.map((a) => a.data)).toEqual([ip]);
    await logCurrent();
    expect(upstream.count("short.cache.test", "A")).toBe(2);
    expect(await reach(ip)).toBe(true);
  });

  it("a deny CIDR pushed after caching is honoured: the address is closed and no longer answered", async () => {
    const ip = net.serverIp4[2]!;
    await ask("denycidr.cache.test");
    expect((await ask("denycidr.cache.test")).answers.map((a) => a.data)).toEqual([ip]);
    expect(await reach(ip)).toBe(true);
    const handle = cp.daemonOf(id)!;
    expect(await handle.denyCidr(id, `${ip}/32`)).toMatchObject({ applied: true });
    expect(await reach(ip)).toBe(false);
    const after = await ask("denycidr.cache.test");
    expect(after.status).toBe("NOERROR");
    expect(after.answers).toEqual([]); // the rebinding guard takes the denied address out of the reply
    await logCurrent();
    expect(upstream.count("denycidr.cache.test", "A")).toBe(2); // the cached answer was dropped
    expect(await reach(ip)).toBe(false);
  });

  it("a deny domain pushed after caching is honoured: REFUSED, nothing sent upstream, the address closed", async () => {
    const ip = net.serverIp4[3]!;
    await ask("denyname.cache.test");
    expect((await ask("denyname.cache.test")).status).toBe("NOERROR");
    expect(await reach(ip)).toBe(true);
    const handle = cp.daemonOf(id)!;
    expect(await handle.denyDomain(id, "denyname.cache.test")).toMatchObject({ applied: true });
    expect((await ask("denyname.cache.test")).status).toBe("REFUSED");
    await logCurrent();
    expect(upstream.count("denyname.cache.test", "A")).toBe(1);
    expect(await reach(ip)).toBe(false);
    expect(markers).toBeGreaterThan(0);
  });
});
