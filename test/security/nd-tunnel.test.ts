import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allow, policy } from "../helpers/kernel-filter-fixture.js";
import { probe } from "../helpers/sandbox.js";
import { marker, nfpkt, sniff } from "./tools/nfpkt.js";
import { closeWorld, eventLog, fire, guards, ifaceSpec, mcastMac, securityWorld, type Shot, type World } from "./world.js";

/**
 * Issue 10 item 1: ICMPv6 133-137 used to pass to ANY destination, in every mode, from interfaces
 * and cgroups — a two-way tunnel. Now neighbour discovery passes only as 133/135/136 with hop
 * limit 255 to fe80::/10 or ff02::/16; router advertisements and redirects never (RA guard);
 * everything else is policy. Attacks are crafted from the workload; a sniffer on the far side
 * (the server namespace, which is the neighbour and the gateway) proves that nothing arrives.
 */
describe("ICMPv6 tunnel (item 1): neighbour discovery is link-scope only", () => {
  let w: World | undefined;
  const id = `sec-nd-${process.pid}`;

  beforeAll(async () => {
    w = await securityWorld("secnd");
  });
  afterAll(async () => {
    await closeWorld(w);
  });

  /** The attacks: ND/RA/redirect to a global address, ND with a forwardable hop limit, RA/redirect on-link. */
  function attacks(tag: string): Shot[] {
    const { net, serverMac, wlLL, serverLL } = w!;
    const global = net.serverIp6[1]!; // a global unicast address, not in any allow entry
    const toGlobal = (type: number): Shot => ({
      spec: [`eth=self,${serverMac}`, `ip6=${net.workloadIp6},${global},255`, `icmp6=${type},0,${global}`],
      mark: marker(`${tag}g${type}`),
    });
    return [
      ...[133, 134, 135, 136, 137].map(toGlobal),
      { spec: [`eth=self,${mcastMac("ff000011")}`, `ip6=${wlLL},ff02::1:ff00:11,64`, `icmp6=135,0,${global}`], mark: marker(`${tag}hop64`) },
      { spec: [`eth=self,${mcastMac("00000001")}`, `ip6=${wlLL},ff02::1,255`, "icmp6=134"], mark: marker(`${tag}ra`) },
      { spec: [`eth=self,${mcastMac("00000001")}`, `ip6=${wlLL},ff02::1,255`, "hbh", "icmp6=134"], mark: marker(`${tag}rahbh`) },
      { spec: [`eth=self,${serverMac}`, `ip6=${wlLL},${serverLL},255`, `icmp6=137,0,${global}`], mark: marker(`${tag}redir`) },
    ];
  }

  /** Legitimate neighbour discovery: a neighbour solicitation to the solicited-node group. */
  function legit(tag: string): Shot {
    const { net, wlLL } = w!;
    return { spec: [`eth=self,${mcastMac("ff000011")}`, `ip6=${wlLL},ff02::1:ff00:11,255`, `icmp6=135,0,${net.serverIp6[1]}`], mark: marker(`${tag}ns`) };
  }

  for (const mode of ["allowlist", "block-all"] as const) {
    it(`interface, ${mode}: ICMPv6 133-137 to a global address, with hop limit 64, RA and redirect never arrive; ND does`, async () => {
      const { filter, net, serverMac } = w!;
      // A slot per mode: identical events (same slot, addresses, reason) are folded for 10 s.
      await filter.attach(ifaceSpec(id, mode === "allowlist" ? 71 : 74, net.hostIf), policy(mode, [allow(`${net.serverIp6[0]}/128`)]));
      try {
        const events = eventLog(filter);
        const bad = attacks(mode[0]!);
        const good = legit(mode[0]!);
        const [atServer] = await fire(w!, [...bad, good], [{ ns: net.serverNs, iface: "sv0" }]);
        for (const s of bad) expect(atServer!.get(s.mark), `${s.mark}: ${s.spec.join(" ")}`).toBe(0);
        expect(atServer!.get(good.mark), "a neighbour solicitation to the solicited-node group passes").toBeGreaterThan(0);
        const ra = await events.find((e) => e.reason === "router-message" && e.dst === "ff02::1");
        expect(ra).toMatchObject({ family: 6, protocol: 58, dstPort: 134, verdict: "blocked" });
        events.stop();
        // Legitimate traffic: the workload resolves its neighbour (ND) and pings the allowed address.
        await w!.sb.exec(net.workloadNs, ["ip", "-6", "neigh", "flush", "dev", "wl0"]);
        if (mode === "allowlist") {
          expect(await probe(w!.sb, net.workloadNs, "icmp", net.serverIp6[0]!, { timeoutMs: 3000 })).toBe(true);
          expect(await probe(w!.sb, net.workloadNs, "icmp", net.serverIp6[1]!, { timeoutMs: 1000 })).toBe(false);
          const neigh = (await w!.sb.exec(net.workloadNs, ["ip", "-6", "neigh", "show", net.serverIp6[0]!])).stdout;
          expect(neigh).toContain(serverMac);
        }
      } finally {
        await filter.detach(id);
      }
    });
  }

  it("interface, disabled: the RA guard holds, also behind extension headers; ordinary ICMPv6 with extension headers passes", async () => {
    const { filter, net, serverMac, wlLL } = w!;
    await filter.attach(ifaceSpec(id, 75, net.hostIf), policy("disabled", []));
    try {
      const ra = (ext: number): Shot => ({
        spec: [`eth=self,${mcastMac("00000001")}`, `ip6=${wlLL},ff02::1,255`, ...(ext ? [`ext=${ext}`] : []), "icmp6=134"],
        mark: marker(`dra${ext}`),
      });
      const redirect = { spec: [`eth=self,${serverMac}`, `ip6=${wlLL},${w!.serverLL},255`, "ext=2", `icmp6=137,0,${net.serverIp6[1]}`], mark: marker("dredir") };
      const echo = { spec: [`eth=self,${serverMac}`, `ip6=${net.workloadIp6},${net.serverIp6[1]},64`, "ext=2", "icmp6=128"], mark: marker("decho") };
      const [atServer] = await fire(w!, [ra(0), ra(1), ra(4), ra(5), redirect, echo], [{ ns: net.serverNs, iface: "sv0" }]);
      for (const ext of [0, 1, 4, 5]) expect(atServer!.get(marker(`dra${ext}`)), `RA behind ${ext} extension headers`).toBe(0);
      expect(atServer!.get(redirect.mark), "redirect behind 2 extension headers").toBe(0);
      expect(atServer!.get(echo.mark), "echo request behind 2 extension headers (disabled mode)").toBeGreaterThan(0);
    } finally {
      await filter.detach(id);
    }
  });

  it("interface with the router guard: router advertisements get the ND rule (on-link, hop limit 255) instead", async () => {
    const { filter, net } = w!;
    await filter.attach(ifaceSpec(id, 72, net.hostIf, { guards: guards({ router: true }) }), policy("block-all", []));
    try {
      const all = attacks("r");
      const ra = all.find((s) => s.mark === marker("rra"))!;
      const raGlobal = all.find((s) => s.mark === marker("rg134"))!;
      const [atServer] = await fire(w!, [ra, raGlobal], [{ ns: net.serverNs, iface: "sv0" }]);
      expect(atServer!.get(ra.mark), "RA to ff02::1 with hop limit 255").toBeGreaterThan(0);
      expect(atServer!.get(raGlobal.mark), "RA to a global address").toBe(0);
    } finally {
      await filter.detach(id);
    }
  });

  for (const mode of ["allowlist", "block-all"] as const) {
    it(`cgroup raw socket, ${mode}: ICMPv6 133-137 to a global address are refused and never arrive; ping6 to an allowed address works`, async () => {
      const { sb, filter, net } = w!;
      const cg = await sb.cgroup();
      await filter.attach({ id, slot: 73, target: { kind: "cgroup", path: cg }, dns: { ipv4: null, ipv6: null, port: 0 } }, policy(mode, [allow(`${net.serverIp6[0]}/128`)]));
      try {
        const marks = [133, 134, 135, 136, 137].map((t) => marker(`c${mode[0]}${t}`));
        const control = marker(`c${mode[0]}ctl`);
        const sniffer = await sniff(sb, net.serverNs, "sv0", 2000, [...marks, control]);
        for (const [i, t] of [133, 134, 135, 136, 137].entries()) {
          const out = await nfpkt(sb, net.workloadNs, ["icmp6", net.serverIp6[1]!, String(t), "255", "2", marks[i]!], { cgroup: cg });
          expect(out, `type ${t} from the cgroup`).toMatch(/^error EPERM/);
        }
        // The same raw socket from outside the cgroup reaches the far side (the sniffer works).
        expect(await nfpkt(sb, net.workloadNs, ["icmp6", net.serverIp6[1]!, "135", "255", "2", control])).toBe("sent 2");
        const counts = await sniffer.counts;
        for (const m of marks) expect(counts.get(m), m).toBe(0);
        expect(counts.get(control)).toBeGreaterThan(0);
        if (mode === "allowlist") {
          expect(await probe(sb, net.workloadNs, "icmp", net.serverIp6[0]!, { cgroup: cg, timeoutMs: 3000 })).toBe(true);
        }
      } finally {
        await filter.detach(id);
      }
    });
  }
});
