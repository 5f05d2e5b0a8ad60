import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { allow, closeFilterSandbox, deny, filterSandbox, policy, type FilterSandbox } from "../../helpers/kernel-filter-fixture.js";
import { probe, type SandboxNetwork, type Sandbox } from "../../helpers/sandbox.js";

const PORT = 7101;

describe("interface attachment: modes enforced on real packets (TCP, UDP, ICMP; IPv4 and IPv6)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  const id = `t-modes-${process.pid}`;

  beforeAll(async () => {
    ctx = await filterSandbox("mode", PORT);
    ({ sb, net, filter } = ctx);
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  const reach = (kind: "tcp" | "udp" | "icmp", ip: string) => probe(sb, net.workloadNs, kind, ip, { port: PORT, timeoutMs: 800 });

  it("allowlist: listed destinations pass, everything else is dropped", async () => {
    const [a, b] = net.serverIp4;
    const [a6, b6] = net.serverIp6;
    const r = await filter.attach(
      { id, slot: 7, target: { kind: "interface", name: net.hostIf, direction: "ingress" }, dns: { ipv4: null, ipv6: null, port: 0 } },
      policy("allowlist", [allow(`${a}/32`), allow(`${a6}/128`)]),
    );
    expect(["tcx", "clsact"]).toContain(r.method);
    for (const kind of ["tcp", "udp", "icmp"] as const) {
      expect(await reach(kind, a!), `${kind} to allowed ${a}`).toBe(true);
      expect(await reach(kind, b!), `${kind} to unlisted ${b}`).toBe(false);
      expect(await reach(kind, a6!), `${kind} to allowed ${a6}`).toBe(true);
      expect(await reach(kind, b6!), `${kind} to unlisted ${b6}`).toBe(false);
    }
    const c = await filter.counters([id]);
    expect(c.get(id)!.blocked).toBeGreaterThan(0n);
    expect(c.get(id)!.allowed).toBeGreaterThan(0n);
  });

  it("allowlist with prefixes: longest prefix wins, deny wins at equal length", async () => {
    const [a, b, c] = net.serverIp4;
    await filter.replacePolicy(id, policy("allowlist", [allow(`${net.subnet4}.0/24`), deny(`${b}/32`), { ...allow(`${c}/32`), deny: true }]));
    expect(await reach("tcp", a!)).toBe(true);
    expect(await reach("tcp", b!)).toBe(false);
    expect(await reach("tcp", c!)).toBe(false);
  });

  it("denylist: listed destinations are dropped, a longer allow carves an exception", async () => {
    const [a, b, c] = net.serverIp4;
    await filter.replacePolicy(id, policy("denylist", [deny(`${net.subnet4}.0/24`), allow(`${c}/32`), deny(`${net.subnet6}::/64`)]));
    expect(await reach("udp", a!)).toBe(false);
    expect(await reach("icmp", b!)).toBe(false);
    expect(await reach("tcp", c!)).toBe(true);
    expect(await reach("tcp", net.serverIp6[0]!)).toBe(false);
  });

  it("block-all drops everything; disabled passes everything", async () => {
    await filter.setMode(id, "block-all", false);
    expect(await reach("tcp", net.serverIp4[2]!)).toBe(false);
    expect(await reach("icmp", net.serverIp6[1]!)).toBe(false);
    await filter.setMode(id, "disabled", false);
    expect(await reach("tcp", net.serverIp4[0]!)).toBe(true);
    expect(await reach("udp", net.serverIp6[3]!)).toBe(true);
  });

  it("blocked packets are reported as events with the 5-tuple and reason", async () => {
    const events = filter.events()[Symbol.asyncIterator]();
    await filter.replacePolicy(id, policy("allowlist", []));
    expect(await reach("tcp", net.serverIp4[4]!)).toBe(false);
    const ev = await Promise.race([events.next(), new Promise<never>((_, rej) => setTimeout(() => rej(new Error("no event")), 5000))]);
    expect(ev.done).toBe(false);
    expect(ev.value).toMatchObject({ attachmentId: id, dst: net.serverIp4[4], dstPort: PORT, protocol: 6, verdict: "blocked", reason: "not-in-allowlist" });
    await events.return?.();
  });
});
