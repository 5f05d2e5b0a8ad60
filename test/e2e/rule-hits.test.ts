import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import { requireKernel, Sandbox, type SandboxNetwork } from "../helpers/sandbox.js";
import { waitFor } from "../helpers/daemon-harness.js";
import { dig, Dnsmasq, E2eDaemon, splitHostPort } from "../helpers/e2e.js";
import { ControlPlaneServer, type AttachmentStatsInfo, type PolicySpec } from "../../sdk/src/index.js";

// Issue 14, rule hit counts end to end: the real `netfenced` process, a control plane (the SDK)
// pushing the policy, real packets from the workload namespace (exactly N ICMP echo requests per
// destination with ping -c N), `netfenced rules --id ID --json` reading the counts back, and the
// heartbeat carrying them to the control plane. Counts are exact for policy rules: ARP and
// neighbour discovery count against the reserved "always-allowed" rule.

interface RuleJson {
  ruleId: number;
  rule: string;
  kind: string;
  action: string;
  kernelEntries?: number;
  prefixes?: string[];
  packets?: string;
  lastHit?: string;
  inDaemon?: boolean;
}

describe("rule hit counts: netfenced rules and heartbeats (real daemon, real kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let upstream: Dnsmasq;
  let daemon: E2eDaemon;
  let cp: ControlPlaneServer;
  let id: string;
  let dnsHost: string;
  let dnsPort: number;
  const heartbeats: AttachmentStatsInfo[][] = [];
  let policy: PolicySpec;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfrh");
    net = await sb.network({ hostAddress: true });
    const s = net.serverIp4;
    upstream = await Dnsmasq.start(sb, net.serverNs, s[9]!, [{ name: "www.hits.test", ipv4: s[3] }]);
    policy = {
      mode: "allowlist",
      allow: [`${s[0]}/32`, `${net.subnet4}.0/28`],
      deny: [`${s[1]}/32`],
      dns: { mode: "allowlist", allow: [{ domain: "hits.test", includeSubdomains: true }], upstreams: [`${s[9]}:53`] },
    };
    cp = new ControlPlaneServer({
      logger: pino({ level: "silent" }),
      hooks: {
        onSubscribed: () => policy,
        onHeartbeat: (_d, stats) => void heartbeats.push([...stats]),
      },
    });
    const cpPort = await cp.listen("127.0.0.1:0");
    daemon = new E2eDaemon({
      pinRoot: await sb.pinRoot(),
      dns: { listenAddr: net.hostIp4!, upstream: "127.0.0.1:9" },
      controlPlane: { url: `127.0.0.1:${cpPort}`, ackTimeout: "5s", heartbeat: "300ms" },
    });
    await daemon.start();
    await waitFor(async () => (await daemon.statusJson()).controlPlaneState === "CONNECTION_STATE_CONNECTED", "daemon connected", 15_000);
    const a = await daemon.attachInterface(net.hostIf, { vm: "rule-hits" });
    id = a.id;
    ({ host: dnsHost, port: dnsPort } = splitHostPort(a.dnsAddress));
  }, 120_000);

  afterAll(async () => {
    if (daemon?.alive() && id) await daemon.cli("detach", "--id", id);
    await daemon?.cleanup();
    await cp?.close(100);
    await upstream?.stop();
    await sb?.cleanup();
  });

  const ping = async (ip: string, n: number): Promise<void> => {
    const r = await sb.exec(net.workloadNs, ["ping", "-n", "-q", "-c", String(n), "-i", "0.01", "-W", "1", ip], { allowFail: true, timeoutMs: 15_000 });
    expect(r.stdout).toMatch(new RegExp(`${n} packets transmitted`));
  };
  const rules = async (): Promise<RuleJson[]> => {
    const r = await daemon.cli("rules", "--id", id, "--json");
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { rules: RuleJson[] }).rules;
  };
  const byRule = (list: readonly RuleJson[], text: string): RuleJson => {
    const r = list.find((x) => x.rule === text);
    if (r === undefined) throw new Error(`no rule "${text}" in ${JSON.stringify(list.map((x) => x.rule))}`);
    return r;
  };
  const packetsOf = (list: readonly RuleJson[], text: string): number => Number(byRule(list, text).packets ?? 0);

  it("counts move with real traffic: exactly N to an allowed /32, M to a denied one, K to a prefix; the table shows them", async () => {
    const s = net.serverIp4;
    const t0 = Date.now();
    const before = await rules();
    expect(packetsOf(before, `allow-cidr ${s[0]}/32`)).toBe(0);
    await ping(s[0]!, 12);
    await ping(s[1]!, 9);
    await ping(s[2]!, 5); // .12: no /32 of its own, allowed by the /28 prefix rule
    const after = await rules();
    expect(packetsOf(after, `allow-cidr ${s[0]}/32`)).toBe(12);
    expect(packetsOf(after, `deny-cidr ${s[1]}/32`)).toBe(9);
    expect(packetsOf(after, `allow-cidr ${net.subnet4}.0/28`)).toBe(5);
    const hit = byRule(after, `allow-cidr ${s[0]}/32`);
    expect(hit).toMatchObject({ kind: "cidr", action: "allow", kernelEntries: 1, prefixes: [`${s[0]}/32`], inDaemon: true });
    expect(Date.parse(hit.lastHit!)).toBeGreaterThanOrEqual(t0 - 1000);
    expect(byRule(after, "default-deny")).toMatchObject({ kind: "reserved", action: "deny" });
    // The human table: one line per rule with its count.
    const table = await daemon.cli("rules", "--id", id);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/mode allowlist in the kernel/);
    expect(table.stdout).toMatch(new RegExp(`allow-cidr ${s[0]!.replace(/\./g, "\\.")}/32\\s+allow\\s+1\\s+12\\s+\\d+s ago`));
    // An unknown attachment: one line on stderr and exit 1; no --id: a usage error (exit 2).
    const unknown = await daemon.cli("rules", "--id", "nf-nope");
    expect([unknown.code, unknown.stderr.trim().split("\n")]).toEqual([1, [expect.stringMatching(/nf-nope/)]]);
    expect((await daemon.cli("rules")).code).toBe(2);
  });

  it("a DNS-learned address counts against the domain rule that allowed it", async () => {
    const s = net.serverIp4;
    const r = await dig(sb, net.workloadNs, dnsHost, dnsPort, "www.hits.test", "A");
    expect(r.status).toBe("NOERROR");
    const before = packetsOf(await rules(), "allow-domain *.hits.test");
    await ping(s[3]!, 7); // .13 is inside the /28 too: the learned /32 (longest prefix) decides
    const list = await rules();
    const dom = byRule(list, "allow-domain *.hits.test");
    expect(Number(dom.packets) - before).toBe(7);
    expect(dom).toMatchObject({ kind: "domain", action: "allow", kernelEntries: 1, prefixes: [`${s[3]}/32`] });
  });

  it("counts survive a BulkUpdate restating the rules; a new rule starts at zero", async () => {
    const s = net.serverIp4;
    const before = await rules();
    policy = { ...policy, allow: [...(policy.allow ?? []), `${s[4]}/32`] };
    const h = cp.daemons()[0]!;
    const out = await h.bulkUpdate(id, policy);
    expect(out.applied).toBe(true);
    const after = await rules();
    for (const text of [`allow-cidr ${s[0]}/32`, `deny-cidr ${s[1]}/32`, "allow-domain *.hits.test"]) {
      expect({ text, id: byRule(after, text).ruleId, packets: packetsOf(after, text) }).toEqual({ text, id: byRule(before, text).ruleId, packets: packetsOf(before, text) });
    }
    expect(packetsOf(after, `allow-cidr ${s[4]}/32`)).toBe(0);
    await ping(s[0]!, 3);
    expect(packetsOf(await rules(), `allow-cidr ${s[0]}/32`)).toBe(packetsOf(before, `allow-cidr ${s[0]}/32`) + 3);
  });

  it("heartbeats carry the rules whose count moved (total counts), and not the ones that did not", async () => {
    const s = net.serverIp4;
    const total = packetsOf(await rules(), `deny-cidr ${s[1]}/32`) + 4;
    heartbeats.length = 0;
    await ping(s[1]!, 4);
    await waitFor(
      () => heartbeats.some((hb) => hb.some((st) => st.id === id && st.ruleHits.some((h) => h.rule === `deny-cidr ${s[1]}/32` && h.packets === BigInt(total)))),
      "a heartbeat with the deny rule's new count",
      10_000,
    );
    const latest = heartbeats.at(-1)!.find((st) => st.id === id)!;
    // The heartbeat after that one: nothing of this attachment's policy rules moved since.
    await waitFor(() => heartbeats.at(-1) !== undefined && heartbeats.at(-1)!.find((st) => st.id === id) !== latest, "a later heartbeat", 5000);
    const quiet = heartbeats.at(-1)!.find((st) => st.id === id)!;
    expect(quiet.ruleHits.filter((h) => h.rule === `deny-cidr ${s[1]}/32`)).toEqual([]);
  });

  // Runs after the tests above on purpose: their BulkUpdate added a rule after the first ones, so
  // ids handed out afresh in policy order would differ from the ones the kernel entries carry
  // (seen failing with the restore in reconcile.ts disabled).
  it("after a daemon restart the counts stay with their rules (ids restored from the kernel entries)", async () => {
    const s = net.serverIp4;
    await ping(s[1]!, 3);
    const before = await rules();
    expect(packetsOf(before, `deny-cidr ${s[1]}/32`)).toBeGreaterThan(0);
    await daemon.stop();
    await daemon.start();
    const after = await rules();
    for (const text of [`allow-cidr ${s[0]}/32`, `deny-cidr ${s[1]}/32`, "allow-domain *.hits.test"]) {
      expect({ text, packets: packetsOf(after, text) }).toEqual({ text, packets: packetsOf(before, text) });
    }
    await ping(s[1]!, 2);
    expect(packetsOf(await rules(), `deny-cidr ${s[1]}/32`)).toBe(packetsOf(before, `deny-cidr ${s[1]}/32`) + 2);
  });
});
