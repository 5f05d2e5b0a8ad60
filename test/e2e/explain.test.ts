import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../helpers/sandbox.js";
import { waitFor } from "../helpers/daemon-harness.js";
import { dig, Dnsmasq, E2eDaemon, splitHostPort } from "../helpers/e2e.js";
import { ControlPlaneServer } from "../../sdk/src/index.js";

// Issue 14, explain, end to end: the real `netfenced` (dist/), its CLI, an SDK control plane, a
// dnsmasq upstream, the real kernel. For each destination the test asks `netfenced explain --json`
// and then sends real packets (a TCP connect + echo from the workload, a DNS query); explain's
// verdict must be what the far side saw, and its provenance must name the rule's origin: the
// SubscribedAck, a control-plane command (with its id and TTL), DNS names (a shared address), or
// the always-allowed DNS server. A cgroup attachment covers loopback, which an interface filter
// never sees.

const PORT = 7419;

interface Explained {
  attachmentId: string;
  address?: {
    address: string;
    verdict: string;
    reason: string;
    step: string;
    entry?: { cidr: string; allow?: boolean; deny?: boolean; ttlLeftMs: string; table: string; used?: boolean };
    sources?: { kind: string; action?: string; cidr?: string; name?: string; answerTtlSeconds?: number; learnedAt?: string; origin?: { source?: string; commandId?: string; what?: string } }[];
    names?: string[];
    notes?: string[];
    modeOrigin?: { source?: string; what?: string };
  };
  domain?: {
    domain: string;
    resolves?: boolean;
    ruleAction?: string;
    ruleDomain?: string;
    ruleIncludeSubdomains?: boolean;
    ruleOrigin?: { source?: string; what?: string };
    learned?: { address: string; ttlLeftMs: string; answerTtlSeconds?: number; sharedWith?: string[] }[];
  };
}

describe("netfenced explain agrees with real packets (real daemon, control plane, dnsmasq, kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let upstream: Dnsmasq;
  let cp: ControlPlaneServer;
  let daemon: E2eDaemon;
  let ifId: string;
  let cgId: string;
  let cgroup: string;
  let dnsHost: string;
  let dnsPort: number;
  let sub: string;
  const ip = (last: number) => `${sub}.${last}`;

  const explain = async (id: string, ...args: string[]): Promise<Explained> => {
    const r = await daemon.cli("explain", "--id", id, "--json", ...args);
    if (r.code !== 0) throw new Error(`explain ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as Explained;
  };
  const reach = (addr: string, cg?: string) => probe(sb, net.workloadNs, "tcp", addr, { port: PORT, timeoutMs: 800, cgroup: cg });
  /** explain's verdict for addr:PORT/tcp and whether the echo server answered, side by side. */
  const both = async (id: string, addr: string, cg?: string) => {
    const e = await explain(id, `${addr.includes(":") ? `[${addr}]` : addr}:${PORT}/tcp`);
    return { e: e.address!, reached: await reach(addr, cg) };
  };

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfex");
    net = await sb.network({ hostAddress: true });
    sub = net.subnet4;
    // Server addresses: .130 (allowed CIDR), .141 (a deny inside it), .200 (two DNS names),
    // .210 (nothing), .220 (a control-plane command with a TTL).
    await sb.exec(net.serverNs, ["sh", "-c", [130, 141, 200, 210, 220].map((n) => `ip addr add ${ip(n)}/24 dev sv0`).join(" && ")]);
    await sb.echoServer(net.serverNs, PORT);
    // Loopback inside the workload namespace: an echo server there, for the cgroup attachment.
    await sb.exec(net.workloadNs, ["ip", "link", "set", "lo", "up"]);
    await sb.echoServer(net.workloadNs, PORT);
    upstream = await Dnsmasq.start(sb, net.serverNs, net.serverIp4[9]!, [
      { name: "a.ex.test", ipv4: ip(200) },
      { name: "b.ex.test", ipv4: ip(200) },
    ]);
    cp = new ControlPlaneServer({
      logger: pino({ level: "silent" }),
      hooks: {
        onSubscribed: () => ({
          mode: "allowlist",
          allow: [`${sub}.128/26`],
          deny: [`${sub}.140/30`],
          dns: { mode: "allowlist", allow: ["*.ex.test"], deny: ["evil.ex.test"], upstreams: [`${net.serverIp4[9]}:53`] },
        }),
      },
    });
    const cpPort = await cp.listen("127.0.0.1:0");
    daemon = new E2eDaemon({
      pinRoot: await sb.pinRoot(),
      dns: { listenAddr: net.hostIp4!, upstream: "127.0.0.1:9" },
      controlPlane: { url: `127.0.0.1:${cpPort}`, ackTimeout: "5s", heartbeat: "30s" },
    });
    await daemon.start();
    await waitFor(async () => (await daemon.statusJson()).controlPlaneState === "CONNECTION_STATE_CONNECTED", "daemon connected to the control plane", 15_000);
    const a = await daemon.attachInterface(net.hostIf, { vm: "explain" });
    ifId = a.id;
    ({ host: dnsHost, port: dnsPort } = splitHostPort(a.dnsAddress));
    cgroup = await sb.cgroup();
    const c = await daemon.cli("attach", "-g", cgroup, "--json");
    if (c.code !== 0) throw new Error(`cgroup attach failed: ${c.stderr}`);
    cgId = (JSON.parse(c.stdout) as { id: string }).id;
  }, 120_000);

  afterAll(async () => {
    for (const id of [ifId, cgId]) if (daemon?.alive() && id) await daemon.cli("detach", "--id", id);
    await daemon?.cleanup();
    await cp?.close(100);
    await upstream?.stop();
    await sb?.cleanup();
  });

  it("an address in an allowed CIDR: allowed by that entry, from the SubscribedAck", async () => {
    const { e, reached } = await both(ifId, ip(130));
    expect({ verdict: e.verdict, reached }).toEqual({ verdict: "allowed", reached: true });
    expect(e).toMatchObject({ reason: "allow-cidr", step: "i", entry: { cidr: `${sub}.128/26`, allow: true, table: "lpm", used: true, ttlLeftMs: "-1" } });
    expect(e.sources).toEqual([expect.objectContaining({ kind: "cidr-rule", action: "allow", cidr: `${sub}.128/26`, origin: expect.objectContaining({ source: "control-plane", what: "subscribed-ack" }) })]);
  });

  it("an address under a deny CIDR inside the allowed one: blocked by the deny entry", async () => {
    const { e, reached } = await both(ifId, ip(141));
    expect({ verdict: e.verdict, reached }).toEqual({ verdict: "blocked", reached: false });
    expect(e).toMatchObject({ reason: "deny-cidr", step: "i", entry: { cidr: `${sub}.140/30`, deny: true, used: true } });
    expect(e.sources).toEqual([expect.objectContaining({ kind: "cidr-rule", action: "deny", cidr: `${sub}.140/30` })]);
  });

  it("an address nobody allowed: blocked, not in the allowlist, no entry", async () => {
    const { e, reached } = await both(ifId, ip(210));
    expect({ verdict: e.verdict, reached }).toEqual({ verdict: "blocked", reached: false });
    expect(e).toMatchObject({ reason: "not-in-allowlist", step: "k" });
    expect(e.entry).toBeUndefined();
    // IPv6 too (the allowlist has no IPv6 entry).
    const v6 = await both(ifId, net.serverIp6[0]!);
    expect({ verdict: v6.e.verdict, reason: v6.e.reason, reached: v6.reached }).toEqual({ verdict: "blocked", reason: "not-in-allowlist", reached: false });
  });

  it("a DNS-learned address: blocked before the query, then allowed with every name that produced it (shared)", async () => {
    const before = await both(ifId, ip(200));
    expect({ verdict: before.e.verdict, reached: before.reached }).toEqual({ verdict: "blocked", reached: false });
    for (const name of ["a.ex.test", "b.ex.test"]) {
      const r = await dig(sb, net.workloadNs, dnsHost, dnsPort, name, "A");
      expect({ name, status: r.status }).toEqual({ name, status: "NOERROR" });
    }
    const { e, reached } = await both(ifId, ip(200));
    expect({ verdict: e.verdict, reached }).toEqual({ verdict: "allowed", reached: true });
    expect(e).toMatchObject({ reason: "allow-cidr", entry: { cidr: `${ip(200)}/32`, allow: true, table: "small-exact" } });
    expect(Number(e.entry!.ttlLeftMs)).toBeGreaterThan(0); // the kernel entry's deadline, from the answer's TTL
    expect(e.names).toEqual(["a.ex.test", "b.ex.test"]);
    expect(e.sources!.filter((s) => s.kind === "dns").map((s) => s.name).sort()).toEqual(["a.ex.test", "b.ex.test"]);
    for (const s of e.sources!) expect(s.learnedAt).toBeDefined();
    expect(e.notes!.join("\n")).toMatch(/shared address/);
    const human = await daemon.cli("explain", "--id", ifId, ip(200));
    expect(human.stdout).toContain(`${ifId}: ${ip(200)} is ALLOWED (allow-cidr, step i)`);
    expect(human.stdout).toContain("names:    a.ex.test, b.ex.test  (shared address)");
    // The domain view: the deciding rule, and the address with its TTL and the other name.
    const d = (await explain(ifId, "--domain", "a.ex.test")).domain!;
    expect(d).toMatchObject({ resolves: true, ruleAction: "allow", ruleDomain: "ex.test", ruleIncludeSubdomains: true });
    expect(d.learned).toEqual([expect.objectContaining({ address: ip(200), sharedWith: ["b.ex.test"] })]);
    const evil = (await explain(ifId, "--domain", "evil.ex.test")).domain!;
    expect(evil).toMatchObject({ ruleAction: "deny", ruleDomain: "evil.ex.test" });
    expect(evil.resolves ?? false).toBe(false);
    expect((await dig(sb, net.workloadNs, dnsHost, dnsPort, "evil.ex.test", "A")).status).toBe("REFUSED");
  });

  it("a control-plane command: its command id, its TTL left in the kernel", async () => {
    const handle = cp.daemons()[0]!;
    const out = await handle.allowCidr(ifId, `${ip(220)}/32`, 300);
    const { e, reached } = await both(ifId, ip(220));
    expect({ verdict: e.verdict, reached }).toEqual({ verdict: "allowed", reached: true });
    const left = Number(e.entry!.ttlLeftMs);
    expect(left).toBeGreaterThan(250_000);
    expect(left).toBeLessThanOrEqual(301_000);
    expect(e.sources).toEqual([
      expect.objectContaining({ kind: "cidr-rule", action: "allow", origin: expect.objectContaining({ source: "control-plane", commandId: out.commandId, what: "allow-cidr" }) }),
    ]);
  });

  it("the attachment's DNS server: always allowed on its port (the query is answered)", async () => {
    const e = (await explain(ifId, `${dnsHost}:${dnsPort}/udp`)).address!;
    expect(e).toMatchObject({ verdict: "allowed", reason: "always-allowed", step: "e" });
    const r = await dig(sb, net.workloadNs, dnsHost, dnsPort, "a.ex.test", "A");
    expect(r.status).toBe("NOERROR");
    // Another port of the same address is policy like any destination: not in the allowlist.
    const other = (await explain(ifId, `${dnsHost}:${PORT}/tcp`)).address!;
    expect(other).toMatchObject({ verdict: "blocked", reason: "not-in-allowlist" });
  });

  it("loopback (a cgroup attachment sees it): closed without an explicit allow; the allowed CIDR works from the cgroup too", async () => {
    const lo = await both(cgId, "127.0.0.1", cgroup);
    expect({ verdict: lo.e.verdict, reason: lo.e.reason, reached: lo.reached }).toEqual({ verdict: "blocked", reason: "local-closed", reached: false });
    // The same connect from outside the cgroup reaches the echo server: the filter is what said no.
    expect(await reach("127.0.0.1")).toBe(true);
    const ok = await both(cgId, ip(130), cgroup);
    expect({ verdict: ok.e.verdict, reached: ok.reached }).toEqual({ verdict: "allowed", reached: true });
  });

  it("bad input gets a clear error and a usage exit code", async () => {
    const cases: [string[], RegExp][] = [
      [["--id", ifId, "10.1.2"], /not an IP address/],
      [["--id", ifId, "10.0.0.0/8"], /one address|prefix/],
      [["--id", ifId, "10.0.0.1:99999/tcp"], /not a port/],
      [["--id", ifId, "10.0.0.1:80/bogus"], /bad protocol/],
      [["--id", ifId], /either a destination/],
    ];
    for (const [args, msg] of cases) {
      const r = await daemon.cli("explain", ...args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(msg);
    }
    const unknown = await daemon.cli("explain", "--id", "nf-nosuch", "10.0.0.1");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no attachment with id "nf-nosuch"/);
  });
});
