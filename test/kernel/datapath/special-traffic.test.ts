import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { parseCidr } from "@netfence/proto/parse";
import { type FilterSandbox, allow, closeFilterSandbox, deny, filterSandbox, interfaceSpec, policy, sleep } from "../../helpers/kernel-filter-fixture.js";
import { fixture, probe, type SandboxNetwork, type Sandbox } from "../../helpers/sandbox.js";

const PORT = 7107;
const DNS_PORT = 7153;

describe("special destinations: TTLs, metadata service, DNS server, protected CIDRs, VLANs, audit", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  const id = `t-spec-${process.pid}`;
  const reach = (kind: "tcp" | "udp" | "icmp", ip: string, port = PORT) => probe(sb, net.workloadNs, kind, ip, { port, timeoutMs: 700 });

  beforeAll(async () => {
    ctx = await filterSandbox("spec", PORT);
    ({ sb, net, filter } = ctx);
    await sb.echoServer(net.serverNs, DNS_PORT);
    // A "cloud metadata service" at 169.254.169.254 on the server side, routed from the workload.
    await sb.exec(net.serverNs, ["ip", "addr", "add", "169.254.169.254/32", "dev", "sv0"]);
    await sb.exec(net.workloadNs, ["ip", "route", "add", "169.254.169.254/32", "dev", "wl0", "src", net.workloadIp4]);
    await filter.attach(interfaceSpec(id, 61, net.hostIf, { dns: { ipv4: net.serverIp4[9]!, ipv6: net.serverIp6[9]!, port: DNS_PORT } }), policy("allowlist", []));
  });
  afterAll(async () => {
    await filter?.setProtected([]).catch(() => undefined);
    await closeFilterSandbox(ctx);
  });

  it("a TTL'd entry expires in the kernel on time, without the daemon deleting it", async () => {
    const dst = net.serverIp4[0]!;
    const deadline = Date.now() + 3000; // generous: probes spawn processes on a loaded 2-core machine
    await filter.replacePolicy(id, policy("allowlist", [allow(`${dst}/32`, deadline), allow(`${net.subnet4}.0/24`, deadline)]));
    expect(await reach("tcp", dst)).toBe(true);
    expect(await reach("tcp", net.serverIp4[1]!)).toBe(true);
    await sleep(Math.max(0, deadline - Date.now()) + 300);
    expect(await reach("tcp", dst)).toBe(false);
    expect(await reach("tcp", net.serverIp4[1]!)).toBe(false);
  });

  it("an expired longer prefix does not hide a live shorter one", async () => {
    const deadline = Date.now() + 3000;
    await filter.replacePolicy(id, policy("allowlist", [allow(`${net.subnet4}.0/24`), { ...deny(`${net.serverIp4[2]}/31`), expiresAtMs: deadline }]));
    expect(await reach("tcp", net.serverIp4[2]!)).toBe(false);
    await sleep(Math.max(0, deadline - Date.now()) + 300);
    expect(await reach("tcp", net.serverIp4[2]!)).toBe(true);
  });

  it("169.254.169.254 is not implicitly allowed and can be denied", async () => {
    await filter.replacePolicy(id, policy("allowlist", [allow(`${net.subnet4}.0/24`)]));
    expect(await reach("tcp", "169.254.169.254")).toBe(false);
    await filter.replacePolicy(id, policy("denylist", [deny("169.254.169.254/32")]));
    expect(await reach("tcp", "169.254.169.254")).toBe(false);
    expect(await reach("tcp", net.serverIp4[0]!)).toBe(true);
    await filter.replacePolicy(id, policy("allowlist", [allow("169.254.169.254/32")]));
    expect(await reach("tcp", "169.254.169.254")).toBe(true);
  });

  it("the attachment's DNS server address:port is always allowed, even in block-all; other ports there are not", async () => {
    await filter.replacePolicy(id, policy("block-all", []));
    expect(await reach("udp", net.serverIp4[9]!, DNS_PORT)).toBe(true);
    expect(await reach("tcp", net.serverIp4[9]!, DNS_PORT)).toBe(true);
    expect(await reach("udp", net.serverIp6[9]!, DNS_PORT)).toBe(true);
    expect(await reach("tcp", net.serverIp4[9]!, PORT)).toBe(false);
    expect(await reach("udp", net.serverIp4[8]!, DNS_PORT)).toBe(false);
  });

  it("protected destinations pass in every mode, scoped to their protocol and port", async () => {
    await filter.replacePolicy(id, policy("block-all", []));
    await filter.setProtected([{ cidr: parseCidr(`${net.serverIp4[3]}/32`), protocol: 6, port: PORT }]);
    expect(await reach("tcp", net.serverIp4[3]!)).toBe(true);
    expect(await reach("udp", net.serverIp4[3]!)).toBe(false);
    await filter.replacePolicy(id, policy("denylist", [deny(`${net.subnet4}.0/24`)]));
    expect(await reach("tcp", net.serverIp4[3]!)).toBe(true);
    await filter.setProtected([]);
    expect(await reach("tcp", net.serverIp4[3]!)).toBe(false);
  });

  it("VLAN-tagged frames (802.1Q and QinQ) are parsed and filtered, not waved through", async () => {
    // Tagged frames are built by hand (the kernel under test may lack 8021q): the verdict is
    // read from the counters and the event, since no VLAN device answers on the far side.
    const serverMac = (await sb.exec(net.serverNs, ["cat", "/sys/class/net/sv0/address"])).stdout.trim();
    const send = (dst: string, tags: string) =>
      sb.exec(net.workloadNs, ["python3", fixture("send-vlan.py"), "wl0", serverMac, net.workloadIp4, dst, String(PORT), tags, "5"]);
    const blocked = async () => (await filter.counters([id])).get(id)!.blocked;
    await filter.replacePolicy(id, policy("allowlist", [allow(`${net.serverIp4[6]}/32`)]));
    const events = filter.events()[Symbol.asyncIterator]();
    let b0 = await blocked();
    await send(net.serverIp4[7]!, "100");
    expect(await blocked()).toBe(b0 + 5n);
    const ev = await Promise.race([events.next(), new Promise<never>((_, rej) => setTimeout(() => rej(new Error("no event")), 5000))]);
    expect(ev.value).toMatchObject({ dst: net.serverIp4[7], dstPort: PORT, protocol: 17, reason: "not-in-allowlist" });
    await events.return?.();
    b0 = await blocked();
    await send(net.serverIp4[7]!, "200,100");
    expect(await blocked()).toBe(b0 + 5n);
    b0 = await blocked();
    await send(net.serverIp4[6]!, "100");
    await send(net.serverIp4[6]!, "200,100");
    expect(await blocked()).toBe(b0);
  });

  it("audit mode lets would-be-blocked packets pass, counts and reports them", async () => {
    const events = filter.events()[Symbol.asyncIterator]();
    await filter.replacePolicy(id, policy("allowlist", [], true));
    const before = (await filter.counters([id])).get(id)!;
    expect(await reach("tcp", net.serverIp4[5]!)).toBe(true);
    const after = (await filter.counters([id])).get(id)!;
    expect(after.audited).toBeGreaterThan(before.audited);
    expect(after.blocked).toBe(before.blocked);
    for (;;) {
      const ev = await Promise.race([events.next(), new Promise<never>((_, rej) => setTimeout(() => rej(new Error("no audit event")), 5000))]);
      if (ev.value?.verdict === "audit" && ev.value.dst === net.serverIp4[5]) break;
    }
    await events.return?.();
  });
});
