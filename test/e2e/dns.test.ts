import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../helpers/sandbox.js";
import { waitFor } from "../helpers/daemon-harness.js";
import { dig, Dnsmasq, E2eDaemon, reachability, runFixture, splitHostPort, startPing, type DnsRecord } from "../helpers/e2e.js";
import { ControlPlaneServer, type AttachmentStatsInfo, type DnsDecision, type DnsQuery } from "../../sdk/src/index.js";

// Issue 6, end to end: the real `netfenced` process (dist/), the real CLI, the real kernel and
// real packets. The workload namespace asks the attachment's DNS server (on the sandbox bridge
// address, like a VM host) with dig; the daemon's upstream is our own dnsmasq inside the server
// namespace, whose query log proves which names reached it; a TCP echo server there answers the
// connects. Policies come from the daemon's default_policy (no control plane) and, for proxy mode,
// from an in-process SDK control plane answering QueryDns.

const PORT = 7411;
const RACE_NAMES = 30;

describe("per-attachment DNS, end to end (real daemon, dnsmasq upstream, real kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let upstream: Dnsmasq;
  /** 10.a.b.100 … : extra server addresses, one per race name, plus two for proxy mode. */
  let extra: string[];

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfdn");
    net = await sb.network({ hostAddress: true });
    extra = Array.from({ length: RACE_NAMES + 4 }, (_, i) => `${net.subnet4}.${100 + i}`);
    await sb.exec(net.serverNs, ["sh", "-c", extra.map((ip) => `ip addr add ${ip}/24 dev sv0`).join(" && ")]);
    await sb.echoServer(net.serverNs, PORT);
    const s = net.serverIp4;
    const records: DnsRecord[] = [
      { name: "ok.e2e.test", ipv4: s[0] },
      { name: "v6.e2e.test", ipv6: net.serverIp6[1] },
      { name: "unlisted.e2e.test", ipv4: s[2] },
      { name: "secret.corp.e2e.test", ipv4: s[3] },
      { name: "www.corp.e2e.test", ipv4: s[4] },
      { name: "marker.corp.e2e.test", ipv4: s[4] },
      { name: "x.blocked.e2e.test", ipv4: s[5] },
      { name: "open.blocked.e2e.test", ipv4: s[6] },
      { name: "ttl.e2e.test", ipv4: s[7], ttl: 3 },
      { name: "p-allow.e2e.test", ipv4: s[8] },
      { name: "p-deny.e2e.test", ipv4: s[1] },
      { name: "p-noadd.e2e.test", ipv4: extra[RACE_NAMES + 1] },
      { name: "cn-target.corp.e2e.test", ipv4: extra[RACE_NAMES + 2] },
      { name: "alias.corp.e2e.test", cname: "cn-target.corp.e2e.test" },
      { name: "leak.corp.e2e.test", cname: "x.blocked.e2e.test" },
      { name: "cdn.other-zone.e2e.test", ipv4: extra[RACE_NAMES + 3] },
      { name: "cdn-alias.corp.e2e.test", cname: "cdn.other-zone.e2e.test" },
      ...Array.from({ length: RACE_NAMES }, (_, i) => ({ name: `n${i}.race.e2e.test`, ipv4: extra[i] })),
    ];
    upstream = await Dnsmasq.start(sb, net.serverNs, s[9]!, records);
  }, 120_000);

  afterAll(async () => {
    await upstream?.stop();
    await sb?.cleanup();
  });

  const reach = (ip: string, timeoutMs = 800) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs });
  const expectReach = async (want: Record<string, boolean>) => expect(await reachability(sb, net.workloadNs, PORT, Object.keys(want))).toEqual(want);

  describe("allowlist / denylist rules from the daemon's default_policy (no control plane)", () => {
    let daemon: E2eDaemon;
    let id: string;
    let dnsHost: string;
    let dnsPort: number;
    const ask = (name: string, type = "A", tcp = false) => dig(sb, net.workloadNs, dnsHost, dnsPort, name, type, { tcp });

    beforeAll(async () => {
      const pins = await sb.pinRoot();
      daemon = new E2eDaemon({
        pinRoot: pins,
        dns: { listenAddr: net.hostIp4!, upstream: `${net.serverIp4[9]}:53`, minTtl: "1s" },
        metrics: true,
        yaml: [
          "default_policy:",
          "  mode: allowlist",
          "  dns:",
          "    mode: allowlist",
          '    allow_domains: ["ok.e2e.test", "v6.e2e.test", "*.corp.e2e.test", "open.blocked.e2e.test", "*.race.e2e.test", "ttl.e2e.test"]',
          '    deny_domains: ["secret.corp.e2e.test", "*.blocked.e2e.test"]',
        ].join("\n"),
      });
      await daemon.start();
      const a = await daemon.attachInterface(net.hostIf, { vm: "dns-e2e" });
      id = a.id;
      ({ host: dnsHost, port: dnsPort } = splitHostPort(a.dnsAddress));
      expect(dnsHost).toBe(net.hostIp4);
    }, 120_000);

    afterAll(async () => {
      // Detach so the next daemon can own the interface; then stop this one by its PID.
      if (daemon?.alive() && id) await daemon.cli("detach", "--id", id);
      await daemon?.cleanup();
    });

    it("an allowed name resolves and opens exactly its address (blocked before the query)", async () => {
      expect(await reach(net.serverIp4[0]!)).toBe(false);
      expect(upstream.asked("ok.e2e.test")).toBe(false);
      const r = await ask("ok.e2e.test");
      expect(r.status).toBe("NOERROR");
      expect(r.answers).toEqual([expect.objectContaining({ name: "ok.e2e.test.", type: "A", data: net.serverIp4[0] })]);
      await waitFor(() => upstream.count("ok.e2e.test", "A") === 1, "the forwarded query in the dnsmasq log", 5000);
      expect(await reach(net.serverIp4[0]!)).toBe(true);
      // Over TCP too, and a name allowed only by the broad "*.corp" rule.
      const t = await ask("www.corp.e2e.test", "A", true);
      expect(t.status).toBe("NOERROR");
      expect(t.answers.map((a) => a.data)).toEqual([net.serverIp4[4]]);
      expect(await reach(net.serverIp4[4]!)).toBe(true);
    });

    it("unlisted and denied names get REFUSED, never reach the upstream, and their addresses stay blocked", async () => {
      const before = await daemon.counters(id);
      const refusedNames = ["unlisted.e2e.test", "secret.corp.e2e.test", "x.blocked.e2e.test"];
      for (const name of refusedNames) {
        const r = await ask(name);
        expect({ name, status: r.status, answers: r.answers }).toEqual({ name, status: "REFUSED", answers: [] });
      }
      // Over TCP as well.
      expect((await ask("secret.corp.e2e.test", "A", true)).status).toBe("REFUSED");
      // A later allowed query is in the upstream's log, so the log is current: the refused names never arrived.
      // (A name not asked before: a repeated one is answered from the answer cache and never reaches the upstream.)
      expect((await ask("marker.corp.e2e.test")).status).toBe("NOERROR");
      await waitFor(() => upstream.count("marker.corp.e2e.test", "A") === 1, "the marker query in the dnsmasq log", 5000);
      for (const name of refusedNames) expect({ name, askedUpstream: upstream.asked(name) }).toEqual({ name, askedUpstream: false });
      await expectReach({ [net.serverIp4[2]!]: false, [net.serverIp4[3]!]: false, [net.serverIp4[5]!]: false, [net.serverIp4[4]!]: true });
      const after = await daemon.counters(id);
      expect(after.dnsBlocked - before.dnsBlocked).toBe(4);
      expect(after.dnsAllowed - before.dnsAllowed).toBe(1);
      // The same counters in the Prometheus metrics.
      const m = await daemon.metrics();
      expect(m.get(`netfence_dns_queries_blocked{attachment="${id}"}`)).toBe(after.dnsBlocked);
      expect(m.get(`netfence_dns_queries_allowed{attachment="${id}"}`)).toBe(after.dnsAllowed);
    });

    it("the most specific rule wins: an exact allow beats a broad deny, an exact deny beats a broad allow", async () => {
      expect(await reach(net.serverIp4[6]!)).toBe(false);
      const open = await ask("open.blocked.e2e.test");
      expect(open.status).toBe("NOERROR");
      expect(open.answers.map((a) => a.data)).toEqual([net.serverIp4[6]]);
      expect(await reach(net.serverIp4[6]!)).toBe(true);
      // Siblings under the broad deny, and the exact deny under the broad allow, stay refused.
      expect((await ask("x.blocked.e2e.test")).status).toBe("REFUSED");
      expect((await ask("SECRET.Corp.e2e.test.")).status).toBe("REFUSED");
      expect((await ask("www.CORP.e2e.test")).status).toBe("NOERROR");
      expect(upstream.asked("secret.corp.e2e.test")).toBe(false);
    });

    it("CNAME chains (issue 11): the query name decides, the target's address opens; a denied name in the chain refuses the answer", async () => {
      const target = extra[RACE_NAMES + 2]!;
      const cdn = extra[RACE_NAMES + 3]!;
      await expectReach({ [target]: false, [cdn]: false, [net.serverIp4[5]!]: false });
      const alias = await ask("alias.corp.e2e.test");
      expect(alias.status).toBe("NOERROR");
      expect(alias.answers.map((a) => [a.type, a.data])).toEqual([["CNAME", "cn-target.corp.e2e.test."], ["A", target]]);
      // An allowed name whose CNAME leads to a name no rule mentions: opened (as files.pythonhosted.org → a CDN).
      const viaCdn = await ask("cdn-alias.corp.e2e.test");
      expect(viaCdn.status).toBe("NOERROR");
      expect(viaCdn.answers.map((a) => [a.type, a.data])).toEqual([["CNAME", "cdn.other-zone.e2e.test."], ["A", cdn]]);
      // An allowed name whose CNAME leads into the denied *.blocked zone: REFUSED, nothing opened.
      const leak = await ask("leak.corp.e2e.test");
      expect(leak.status).toBe("REFUSED");
      expect(leak.answers).toEqual([]);
      await expectReach({ [target]: true, [cdn]: true, [net.serverIp4[5]!]: false });
    });

    it("an AAAA answer opens the IPv6 address (and only that one)", async () => {
      const v6 = net.serverIp6[1]!;
      expect(await reach(v6)).toBe(false);
      const r = await ask("v6.e2e.test", "AAAA");
      expect(r.status).toBe("NOERROR");
      expect(r.answers).toEqual([expect.objectContaining({ type: "AAAA", data: v6 })]);
      await expectReach({ [v6]: true, [net.serverIp6[2]!]: false });
    });

    it(`${RACE_NAMES} different names resolved and connected in parallel: every connect succeeds, no packet is ever blocked`, async () => {
      const names = Array.from({ length: RACE_NAMES }, (_, i) => `n${i}.race.e2e.test`);
      const before = await daemon.counters(id);
      // Each client sends its query over raw UDP and issues the connect in the same tick the answer
      // arrives. If an address were not in the kernel map yet, that first SYN would be dropped and
      // counted as blocked (TCP's retransmit would then hide it from the connect result, so the
      // counter is the proof). Checked once against a daemon that answers before the insert
      // completes: the connects still succeeded, with 15 packets blocked — this test fails then.
      const out = await runFixture(sb, net.workloadNs, "dns-client.mjs", ["race", dnsHost, String(dnsPort), String(PORT), "5000", ...names], 60_000);
      const results = JSON.parse(out) as { name: string; address: string | null; ok: boolean; error: string | null }[];
      expect(results.filter((r) => !r.ok)).toEqual([]);
      expect(new Set(results.map((r) => r.address)).size).toBe(RACE_NAMES);
      const after = await daemon.counters(id);
      expect(after.blocked - before.blocked).toBe(0);
      expect(after.allowed).toBeGreaterThan(before.allowed);
      expect(after.dnsAllowed - before.dnsAllowed).toBeGreaterThanOrEqual(RACE_NAMES);
    });

    it("a resolved address is blocked again after the answer's TTL (dnsmasq TTL 3 s, dns.min_ttl 1 s), and re-opened by a new query", async () => {
      const ip = net.serverIp4[7]!;
      expect(await reach(ip)).toBe(false);
      const connectNow = async () =>
        JSON.parse(await runFixture(sb, net.workloadNs, "dns-client.mjs", ["race", dnsHost, String(dnsPort), String(PORT), "2000", "ttl.e2e.test"], 30_000)) as {
          ok: boolean; address: string; error: string | null;
        }[];
      const first = await connectNow();
      expect(first).toEqual([{ name: "ttl.e2e.test", address: ip, ok: true, error: null }]);
      const r = await ask("ttl.e2e.test");
      expect(r.answers[0]?.ttl).toBeLessThanOrEqual(3);
      // No further queries: the kernel entry's deadline passes and the address is blocked again.
      await waitFor(async () => !(await reach(ip, 500)), "the TTL to expire and the address to be blocked", 20_000);
      expect(await reach(ip)).toBe(false);
      const again = await connectNow();
      expect(again[0]).toMatchObject({ address: ip, ok: true });
    });

    it("malformed, truncated and oversized packets get FORMERR/NOTIMP or are dropped; the daemon keeps answering", async () => {
      const before = await daemon.counters(id);
      const out = JSON.parse(await runFixture(sb, net.workloadNs, "dns-client.mjs", ["garbage", dnsHost, String(dnsPort)], 60_000)) as {
        replies: { label: string; reply: { rcode: number | null; id: number | null } | null }[];
        oversizedTcp: string;
      };
      const rcode = Object.fromEntries(out.replies.map((r) => [r.label, r.reply === null ? "no reply" : r.reply.rcode]));
      const FORMERR = 1;
      const NOTIMP = 4;
      expect(rcode).toEqual({
        "short-5-bytes": "no reply",
        "header-only-no-question": FORMERR,
        "truncated-label": FORMERR,
        "question-without-type": FORMERR,
        "two-questions": FORMERR,
        "pointer-loop": FORMERR,
        "label-too-long": FORMERR,
        "response-bit-set": "no reply",
        "opcode-status": NOTIMP,
      });
      // Replies carry the query id.
      for (const r of out.replies) if (r.reply !== null) expect(r.reply.id).toBe(0x1234);
      expect(out.oversizedTcp).toBe("closed");
      expect(daemon.alive()).toBe(true);
      // Still answering, over UDP and TCP, and nothing garbage-shaped reached the upstream.
      expect((await ask("ok.e2e.test")).status).toBe("NOERROR");
      expect((await ask("ok.e2e.test", "A", true)).status).toBe("NOERROR");
      expect((await ask("unlisted.e2e.test")).status).toBe("REFUSED");
      expect(upstream.queries().every((q) => /^[a-z0-9.-]+$/.test(q.name))).toBe(true);
      expect((await daemon.counters(id)).dnsAllowed).toBeGreaterThan(before.dnsAllowed);
      expect(daemon.log()).not.toMatch(/uncaught|unhandled/i);
    });

    it("daemon kill -9: learned addresses keep working; after restart the DNS server is back on the same address with the same rules", async () => {
      await daemon.kill9();
      // Nobody serves DNS now, but what the kernel learned stays enforced.
      await expectReach({ [net.serverIp4[0]!]: true, [net.serverIp4[2]!]: false });
      expect((await dig(sb, net.workloadNs, dnsHost, dnsPort, "ok.e2e.test", "A", { timeoutSeconds: 1 })).status).toBe("TIMEOUT");
      await daemon.start();
      const listed = await daemon.listJson();
      expect(listed.map((a) => [a.id, a.dnsAddress])).toEqual([[id, `${dnsHost}:${dnsPort}`]]);
      expect((await ask("www.corp.e2e.test")).status).toBe("NOERROR");
      expect((await ask("unlisted.e2e.test")).status).toBe("REFUSED");
      expect((await ask("secret.corp.e2e.test", "A", true)).status).toBe("REFUSED");
      await expectReach({ [net.serverIp4[0]!]: true, [net.serverIp4[4]!]: true, [net.serverIp4[2]!]: false });
    });
  });

  describe("rules from a control plane: proxy mode (QueryDns) and domain commands", () => {
    let sbPins: Sandbox;
    let daemon: E2eDaemon;
    let cp: ControlPlaneServer;
    let id: string;
    let dnsHost: string;
    let dnsPort: number;
    const queries: DnsQuery[] = [];
    const heartbeats: AttachmentStatsInfo[][] = [];
    const ask = (name: string, type = "A") => dig(sb, net.workloadNs, dnsHost, dnsPort, name, type);

    beforeAll(async () => {
      const own = extra[RACE_NAMES]!;
      const decide = (q: DnsQuery): DnsDecision => {
        switch (q.domain.replace(/\.$/, "").toLowerCase()) {
          case "p-allow.e2e.test":
            return { allow: true, addToFilter: true };
          case "p-noadd.e2e.test":
            return { allow: true, addToFilter: false };
          case "p-own.e2e.test":
            return { allow: true, addToFilter: true, ips: [own], ttlSeconds: 60 };
          default:
            return { allow: false };
        }
      };
      cp = new ControlPlaneServer({
        logger: pino({ level: "silent" }),
        hooks: {
          // The daemon's own dns.upstream is a dead port: resolving works only through this per-attachment upstream.
          onSubscribed: () => ({ mode: "allowlist", dns: { mode: "proxy", upstreams: [`${net.serverIp4[9]}:53`] } }),
          onHeartbeat: (_d, stats) => void heartbeats.push([...stats]),
          onQueryDns: (q) => {
            queries.push(q);
            return decide(q);
          },
        },
      });
      const cpPort = await cp.listen("127.0.0.1:0");
      sbPins = await Sandbox.create("nfdq");
      daemon = new E2eDaemon({
        pinRoot: await sbPins.pinRoot(),
        dns: { listenAddr: net.hostIp4!, upstream: "127.0.0.1:9" },
        controlPlane: { url: `127.0.0.1:${cpPort}`, ackTimeout: "5s", heartbeat: "500ms" },
      });
      await daemon.start();
      await waitFor(async () => (await daemon.statusJson()).controlPlaneState === "CONNECTION_STATE_CONNECTED", "daemon connected to the control plane", 15_000);
      const a = await daemon.attachInterface(net.hostIf, { vm: "dns-proxy" });
      id = a.id;
      ({ host: dnsHost, port: dnsPort } = splitHostPort(a.dnsAddress));
    }, 120_000);

    afterAll(async () => {
      if (daemon?.alive() && id) await daemon.cli("detach", "--id", id);
      await daemon?.cleanup();
      await cp?.close(100);
      await sbPins?.cleanup();
    });

    it("allow: forwarded upstream and the answer's address opened before the reply", async () => {
      const ip = net.serverIp4[8]!;
      expect(await reach(ip)).toBe(false);
      const r = await ask("p-allow.e2e.test");
      expect(r.status).toBe("NOERROR");
      expect(r.answers.map((a) => a.data)).toEqual([ip]);
      expect(upstream.asked("p-allow.e2e.test")).toBe(true);
      expect(await reach(ip)).toBe(true);
      // The daemon sends the question with its trailing dot (as the Go original); the SDK gives the hook both forms.
      expect(queries).toContainEqual({ attachmentId: id, domain: "p-allow.e2e.test", questionName: "p-allow.e2e.test.", queryType: "A" });
    });

    it("deny: REFUSED and never sent upstream; the address stays blocked", async () => {
      const r = await ask("p-deny.e2e.test");
      expect(r.status).toBe("REFUSED");
      const seen = upstream.count("p-allow.e2e.test", "A");
      expect((await ask("p-allow.e2e.test")).status).toBe("NOERROR");
      await waitFor(() => upstream.count("p-allow.e2e.test", "A") > seen, "the marker query in the dnsmasq log", 5000);
      expect(upstream.asked("p-deny.e2e.test")).toBe(false);
      expect(await reach(net.serverIp4[1]!)).toBe(false);
      expect(queries.some((q) => q.domain.startsWith("p-deny.e2e.test"))).toBe(true);
    });

    it("the control plane's own IPs: answered locally (not upstream) and opened", async () => {
      const own = extra[RACE_NAMES]!;
      expect(await reach(own)).toBe(false);
      const r = await ask("p-own.e2e.test");
      expect(r.status).toBe("NOERROR");
      expect(r.answers).toEqual([expect.objectContaining({ name: "p-own.e2e.test.", type: "A", data: own, ttl: 60 })]);
      expect(await reach(own)).toBe(true);
      // An AAAA question gets no A records from the control plane's IPv4 list.
      expect((await ask("p-own.e2e.test", "AAAA")).answers).toEqual([]);
      expect(upstream.asked("p-own.e2e.test")).toBe(false);
    });

    it("allow without add_to_filter: resolved, but the address stays blocked", async () => {
      const ip = extra[RACE_NAMES + 1]!;
      const r = await ask("p-noadd.e2e.test");
      expect(r.status).toBe("NOERROR");
      expect(r.answers.map((a) => a.data)).toEqual([ip]);
      expect(await reach(ip)).toBe(false);
      const c = await daemon.counters(id);
      expect(c.dnsBlocked).toBeGreaterThanOrEqual(1);
      expect(c.dnsAllowed).toBeGreaterThanOrEqual(4);
      // Heartbeats carry the DNS counters too.
      await waitFor(() => heartbeats.some((hb) => hb.some((st) => st.id === id && st.dnsQueriesAllowed >= BigInt(c.dnsAllowed) && st.dnsQueriesBlocked >= BigInt(c.dnsBlocked))),
        "a heartbeat with the DNS counters", 10_000);
    });

    it("DNS rules pushed by the control plane: answers open addresses; removing a rule closes them unless a CIDR still allows them", async () => {
      const handle = cp.daemonOf(id)!;
      const [www, open, proxied] = [net.serverIp4[4]!, net.serverIp4[6]!, net.serverIp4[8]!];
      expect(await reach(proxied)).toBe(true); // learned from p-allow in proxy mode
      const upstreams = [`${net.serverIp4[9]}:53`];
      expect(await handle.bulkUpdate(id, { mode: "allowlist", allow: [`${open}/32`], dns: { mode: "allowlist", allow: ["*.corp.e2e.test", "open.blocked.e2e.test"], upstreams } }))
        .toMatchObject({ applied: true });
      // p-allow is not allowed by the new rules: what it opened is closed; www.corp not learned yet.
      await expectReach({ [proxied]: false, [www]: false, [open]: true });
      expect((await ask("www.corp.e2e.test")).status).toBe("NOERROR");
      expect((await ask("open.blocked.e2e.test")).status).toBe("NOERROR");
      expect((await ask("p-allow.e2e.test")).status).toBe("REFUSED");
      await expectReach({ [www]: true, [open]: true });
      // A BulkUpdate that still allows *.corp keeps its learned address exactly: a ping flood to it loses nothing.
      const ping = startPing(sb, net.workloadNs, www);
      await waitFor(() => ping.replies() >= 20, "the ping to www.corp's address", 10_000);
      const extraCidr = extra[RACE_NAMES + 1]!;
      expect(await handle.bulkUpdate(id, {
        mode: "allowlist", allow: [`${open}/32`, `${extraCidr}/32`], dns: { mode: "allowlist", allow: ["*.corp.e2e.test", "open.blocked.e2e.test"], upstreams },
      })).toMatchObject({ applied: true });
      const seen = ping.replies();
      await waitFor(() => ping.replies() >= seen + 20, "more replies after the BulkUpdate", 10_000);
      const flood = await ping.stop();
      expect(flood.transmitted - flood.received).toBeLessThanOrEqual(1); // at most the one in flight at stop
      await expectReach({ [www]: true, [extraCidr]: true });
      expect(await handle.removeDomain(id, "corp.e2e.test")).toMatchObject({ applied: true });
      expect(await handle.removeDomain(id, "open.blocked.e2e.test")).toMatchObject({ applied: true });
      // www.corp's address goes with its rule; open.blocked's stays because the CIDR still allows it.
      await expectReach({ [www]: false, [open]: true });
      expect((await ask("www.corp.e2e.test")).status).toBe("REFUSED");
      expect(await handle.bulkUpdate(id, { mode: "allowlist", dns: { mode: "proxy", upstreams } })).toMatchObject({ applied: true });
    });

    it("an upstream that does not answer gives SERVFAIL (the per-attachment upstream replaced by a dead one)", async () => {
      const handle = cp.daemonOf(id);
      expect(handle).toBeDefined();
      const outcome = await handle!.bulkUpdate(id, { mode: "allowlist", dns: { mode: "proxy", upstreams: ["127.0.0.1:9"] } });
      expect(outcome).toMatchObject({ applied: true });
      const seen = upstream.count("p-allow.e2e.test", "A");
      expect((await ask("p-allow.e2e.test")).status).toBe("SERVFAIL");
      expect(upstream.count("p-allow.e2e.test", "A")).toBe(seen);
      expect(daemon.alive()).toBe(true);
      // Back to the working upstream.
      expect(await handle!.bulkUpdate(id, { mode: "allowlist", dns: { mode: "proxy", upstreams: [`${net.serverIp4[9]}:53`] } })).toMatchObject({ applied: true });
      expect((await ask("p-allow.e2e.test")).status).toBe("NOERROR");
    });

    it("control plane gone: proxy-mode queries fail closed (SERVFAIL, nothing upstream); addresses already opened stay open", async () => {
      // Open two addresses through the control plane, then take it away.
      expect((await ask("p-allow.e2e.test")).status).toBe("NOERROR");
      expect((await ask("p-own.e2e.test")).status).toBe("NOERROR");
      await cp.close(100);
      await waitFor(async () => (await daemon.statusJson()).controlPlaneState !== "CONNECTION_STATE_CONNECTED", "the daemon to notice", 15_000);
      const seen = upstream.count("p-allow.e2e.test", "A");
      const r = await ask("p-allow.e2e.test");
      expect(r.status).toBe("SERVFAIL");
      expect((await ask("p-own.e2e.test")).status).toBe("SERVFAIL");
      expect(upstream.count("p-allow.e2e.test", "A")).toBe(seen);
      await expectReach({ [net.serverIp4[8]!]: true, [extra[RACE_NAMES]!]: true, [net.serverIp4[1]!]: false });
    });
  });
});
