import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { policy } from "../helpers/kernel-filter-fixture.js";
import { marker } from "./tools/nfpkt.js";
import { closeWorld, fire, guards, ifaceSpec, mcastMac, securityWorld, type Shot, type World } from "./world.js";

/**
 * DHCP, DHCPv6 and MLD are not always allowed: only an attachment that enables them (metadata
 * netfence.services=dhcp,dhcpv6,mld) lets them through in every mode, and then only in their
 * exact shape (client port to server port, to the broadcast / the all-DHCP-servers group; MLD with
 * hop limit 1 to ff02::/16). Shown in block-all, with a sniffer on the far side.
 */
describe("link services: DHCP, DHCPv6 and MLD only where enabled, only in their exact shape", () => {
  let w: World | undefined;
  const id = `sec-svc-${process.pid}`;

  beforeAll(async () => {
    w = await securityWorld("secsv");
  });
  afterAll(async () => {
    await closeWorld(w);
  });

  function services(tag: string): Record<string, Shot> {
    const { wlLL } = w!;
    const m = (n: string) => marker(`${tag}${n}`);
    return {
      dhcp: { spec: ["eth=self,ff:ff:ff:ff:ff:ff", "ip4=0.0.0.0,255.255.255.255", "udp=68,67"], mark: m("dhcp") },
      dhcpv6: { spec: [`eth=self,${mcastMac("00010002")}`, `ip6=${wlLL},ff02::1:2,1`, "udp=546,547"], mark: m("dhcp6") },
      mld: { spec: [`eth=self,${mcastMac("00000016")}`, `ip6=${wlLL},ff02::16,1`, "hbh", "icmp6=143"], mark: m("mld") },
    };
  }
  function misshapen(tag: string): Record<string, Shot> {
    const { wlLL, net, serverMac } = w!;
    const m = (n: string) => marker(`${tag}${n}`);
    return {
      dhcpWrongPort: { spec: ["eth=self,ff:ff:ff:ff:ff:ff", "ip4=0.0.0.0,255.255.255.255", "udp=68,53"], mark: m("dhcpport") },
      dhcpUnicast: { spec: [`eth=self,${serverMac}`, `ip4=${net.workloadIp4},${net.serverIp4[0]}`, "udp=68,67"], mark: m("dhcpuni") },
      dhcpv6Elsewhere: { spec: [`eth=self,${serverMac}`, `ip6=${net.workloadIp6},${net.serverIp6[0]},1`, "udp=546,547"], mark: m("dhcp6uni") },
      mldHop64: { spec: [`eth=self,${mcastMac("00000016")}`, `ip6=${wlLL},ff02::16,64`, "hbh", "icmp6=143"], mark: m("mld64") },
      mldGlobal: { spec: [`eth=self,${serverMac}`, `ip6=${net.workloadIp6},${net.serverIp6[0]},1`, "hbh", "icmp6=143"], mark: m("mldglob") },
    };
  }

  it("block-all without the services: none of them leaves", async () => {
    const { filter, net } = w!;
    await filter.attach(ifaceSpec(id, 140, net.hostIf), policy("block-all", []));
    try {
      const shots = Object.values(services("n"));
      const [atServer] = await fire(w!, shots, [{ ns: net.serverNs, iface: "sv0" }]);
      for (const s of shots) expect(atServer!.get(s.mark), s.mark).toBe(0);
    } finally {
      await filter.detach(id);
    }
  });

  it("block-all with dhcp, dhcpv6 and mld enabled: the services pass, anything shaped otherwise does not", async () => {
    const { filter, net } = w!;
    await filter.attach(ifaceSpec(id, 141, net.hostIf, { guards: guards({ dhcp: true, dhcpv6: true, mld: true }) }), policy("block-all", []));
    try {
      const ok = services("y");
      const bad = misshapen("y");
      const [atServer] = await fire(w!, [...Object.values(ok), ...Object.values(bad)], [{ ns: net.serverNs, iface: "sv0" }]);
      for (const [name, s] of Object.entries(ok)) expect(atServer!.get(s.mark), name).toBeGreaterThan(0);
      for (const [name, s] of Object.entries(bad)) expect(atServer!.get(s.mark), name).toBe(0);
    } finally {
      await filter.detach(id);
    }
  });
});
