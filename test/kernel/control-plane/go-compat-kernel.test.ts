import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import { waitFor } from "../../helpers/daemon-harness.js";
import { dig, Dnsmasq, E2eDaemon, splitHostPort } from "../../helpers/e2e.js";
import { PythonControlPlane } from "../../compat/python-control-plane.js";

// The Go original's control-plane semantics (SPEC §2, issue 11), end to end: the real netfenced
// process driven by a Python grpcio control plane that behaves as one written for the Go original
// (no command_id, no strict SyncAck, its message flow and defaults), real packets from a workload
// namespace, dig against the attachment's DNS server, dnsmasq as upstream.
//   - subscribe_ack_timeout: 0 → the attach returns at once on the local default policy, the
//     SubscribedAck applies when it comes;
//   - a SubscribedAck with one bad CIDR: that entry is skipped, the rest applies;
//   - QueryDns carries the question name with its trailing dot;
//   - SetMode / BulkUpdate with mode UNSPECIFIED → DISABLED;
//   - a BulkUpdate without dns turns DNS filtering off.

const PORT = 7391;

describe("Go-original control-plane semantics (real daemon, real kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let upstream: Dnsmasq;
  let py: PythonControlPlane;
  let daemon: E2eDaemon;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfgo");
    net = await sb.network({ hostAddress: true });
    await sb.echoServer(net.serverNs, PORT);
    upstream = await Dnsmasq.start(sb, net.serverNs, net.serverIp4[9]!, [
      { name: "ok.go.test", ipv4: net.serverIp4[2] },
      { name: "other.go.test", ipv4: net.serverIp4[4] },
    ]);
    py = await PythonControlPlane.start({ noAck: true, dnsAnswer: { allow: true, addToFilter: true, ips: [net.serverIp4[3]], ttlSeconds: 60 } });
    daemon = new E2eDaemon({
      pinRoot: await sb.pinRoot(),
      dns: { listenAddr: net.hostIp4!, upstream: `${net.serverIp4[9]}:53` },
      controlPlane: { url: `127.0.0.1:${py.port}`, ackTimeout: "0s" },
      yaml: "default_policy: { mode: block-all }",
    });
    await daemon.start();
    await py.waitFor(() => py.ofKind("sync").length === 1, "SyncRequest");
  }, 120_000);

  afterAll(async () => {
    await daemon?.cleanup();
    await py?.stop();
    await upstream?.stop();
    await sb?.cleanup();
  }, 60_000);

  const reach = (ip: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800 });

  it("drives enforcement with the Go original's semantics", async () => {
    const s = net.serverIp4;
    // subscribe_ack_timeout 0: no ack yet (this control plane sends none by itself), the attach returns anyway.
    const { id, dnsAddress } = await daemon.attachInterface(net.hostIf);
    const { host: dnsHost, port: dnsPort } = splitHostPort(dnsAddress);
    await py.waitFor(() => py.ofKind("subscribed").length === 1, "Subscribed");
    expect(await reach(s[0]!)).toBe(false); // the local default policy (block-all) until the ack

    // The SubscribedAck arrives late, with one bad CIDR: skipped and logged, the rest applies.
    await py.push({ id, subscribedAck: { mode: "POLICY_MODE_ALLOWLIST", allowCidrs: [{ cidr: `${s[0]}/32` }, { cidr: "10.0.0.0/99" }], dns: { mode: "DNS_MODE_PROXY" } } });
    await waitFor(async () => reach(s[0]!), "the late SubscribedAck to apply", 10_000);
    expect(await reach(s[1]!)).toBe(false);
    expect(daemon.log()).toMatch(/"skipped":\["subscribed_ack\.allow_cidrs\[1\]\.cidr: .*bad entries skipped/);

    // Proxy mode: QueryDns carries the name as asked, with its trailing dot; the answer opens the filter.
    const answer = await dig(sb, net.workloadNs, dnsHost, dnsPort, "proxy.go.test", "A");
    expect(answer.status).toBe("NOERROR");
    expect(answer.answers.map((a) => a.data)).toEqual([s[3]]);
    expect(py.dnsQueries.map((q) => q["domain"])).toEqual(["proxy.go.test."]);
    expect(await reach(s[3]!)).toBe(true);

    // SetMode with mode UNSPECIFIED (omitted) → DISABLED: everything passes.
    await py.push({ id, setMode: {} });
    await waitFor(async () => reach(s[1]!), "UNSPECIFIED → DISABLED", 10_000);

    // BulkUpdate with DNS allowlist rules: unlisted names refused …
    await py.push({ id, bulkUpdate: { mode: "POLICY_MODE_ALLOWLIST", allowCidrs: [{ cidr: `${s[0]}/32` }], dns: { mode: "DNS_MODE_ALLOWLIST", allowDomains: [{ domain: "ok.go.test" }] } } });
    await waitFor(async () => !(await reach(s[1]!)), "BulkUpdate applied", 10_000);
    expect((await dig(sb, net.workloadNs, dnsHost, dnsPort, "other.go.test", "A")).status).toBe("REFUSED");
    expect(upstream.asked("other.go.test")).toBe(false);
    // … then a BulkUpdate without dns turns DNS filtering off: the name resolves (but opens nothing).
    await py.push({ id, bulkUpdate: { mode: "POLICY_MODE_ALLOWLIST", allowCidrs: [{ cidr: `${s[0]}/32` }] } });
    await waitFor(async () => (await dig(sb, net.workloadNs, dnsHost, dnsPort, "other.go.test", "A")).status === "NOERROR", "DNS filtering off", 10_000);
    expect(upstream.asked("other.go.test")).toBe(true);
    expect(await reach(s[4]!)).toBe(false);
    expect(await reach(s[0]!)).toBe(true);
    // A BulkUpdate whose mode is UNSPECIFIED → DISABLED as well.
    await py.push({ id, bulkUpdate: { allowCidrs: [{ cidr: `${s[0]}/32` }] } });
    await waitFor(async () => reach(s[4]!), "BulkUpdate UNSPECIFIED → DISABLED", 10_000);

    // A Go control plane never set command_id: it never saw a CommandResult.
    expect(py.ofKind("commandResult")).toEqual([]);
    expect((await daemon.statusJson()).controlPlaneState).toBe("CONNECTION_STATE_CONNECTED");
  }, 180_000);
});
