import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { policy } from "../helpers/kernel-filter-fixture.js";
import { probe } from "../helpers/sandbox.js";
import { marker } from "./tools/nfpkt.js";
import { closeWorld, eventLog, fire, guards, ifaceSpec, mcastMac, securityWorld, type Shot, type World } from "./world.js";

const BCAST = "ff:ff:ff:ff:ff:ff";
const ZERO = "00:00:00:00:00:00";
const FAKE_MAC = "02:00:00:00:be:ef";

/**
 * Issue 10 item 7: on a shared bridge, non-IP frames, ARP (forged replies that repoint a
 * neighbour's gateway) and frames with another source MAC used to pass unfiltered. With the
 * workload's MAC and addresses named (netfence.workload-mac / workload-ips), the TC front end drops
 * them; legitimate ARP and neighbour advertisements for the workload's own addresses pass. The
 * neighbour (a second tenant on the bridge) and the gateway (the server namespace) sniff.
 */
describe("shared bridge (item 7): non-IP frames, forged ARP and spoofed MACs never reach the neighbours", () => {
  let w: World | undefined;
  const id = `sec-br-${process.pid}`;
  let slot = 110;

  beforeAll(async () => {
    w = await securityWorld("secbr", { neighbour: true });
  });
  afterAll(async () => {
    await closeWorld(w);
  });

  const named = () => guards({ workloadMac: w!.wlMac, workloadAddresses: [w!.net.workloadIp4, w!.net.workloadIp6] });
  const sniffers = () => [
    { ns: w!.nb!.ns, iface: "nb0" },
    { ns: w!.net.serverNs, iface: "sv0" },
  ];

  /** Attacks, by name; the gateway is the server namespace's first address. */
  function attacks(tag: string): Record<string, Shot> {
    const { net, nb, wlMac, nbMac, serverMac, wlLL } = w!;
    const gw = net.serverIp4[0]!;
    const m = (n: string) => marker(`${tag}${n}`);
    return {
      nonIp: { spec: [`eth=self,${BCAST}`, "type=0x88b5"], mark: m("nonip") },
      arpGatewayToNeighbour: { spec: [`eth=self,${nbMac}`, `arp=2,${wlMac},${gw},${nbMac},${nb!.ip4}`], mark: m("arpgw") },
      arpNeighbourToGateway: { spec: [`eth=self,${serverMac}`, `arp=2,${wlMac},${nb!.ip4},${serverMac},${gw}`], mark: m("arpnb") },
      gratuitousGateway: { spec: [`eth=self,${BCAST}`, `arp=1,${wlMac},${gw},${ZERO},${gw}`], mark: m("garpgw") },
      arpForeignSenderMac: { spec: [`eth=self,${BCAST}`, `arp=2,${FAKE_MAC},${net.workloadIp4},${BCAST},${net.workloadIp4}`], mark: m("arpsha") },
      arpNotEthernet: { spec: [`eth=self,${BCAST}`, "arphw=6", `arp=1,${wlMac},${net.workloadIp4},${ZERO},${nb!.ip4}`], mark: m("arphw") },
      spoofedSourceMac: { spec: [`eth=${FAKE_MAC},${nbMac}`, `ip4=${net.workloadIp4},${nb!.ip4}`, "udp=40004,9"], mark: m("srcmac") },
      naForNeighbour: { spec: [`eth=self,${mcastMac("00000001")}`, `ip6=${wlLL},ff02::1,255`, `icmp6=136,0,${nb!.ip6}`], mark: m("naspoof") },
    };
  }

  /** What the workload may send: ARP and advertisements for its own addresses, IP from its own MAC. */
  function legit(tag: string): Record<string, Shot> {
    const { net, nb, wlMac, nbMac, wlLL } = w!;
    const m = (n: string) => marker(`${tag}${n}`);
    return {
      gratuitousOwn: { spec: [`eth=self,${BCAST}`, `arp=2,${wlMac},${net.workloadIp4},${BCAST},${net.workloadIp4}`], mark: m("garp") },
      arpProbe: { spec: [`eth=self,${BCAST}`, `arp=1,${wlMac},0.0.0.0,${ZERO},${net.workloadIp4}`], mark: m("probe") },
      naOwn: { spec: [`eth=self,${mcastMac("00000001")}`, `ip6=${wlLL},ff02::1,255`, `icmp6=136,0,${net.workloadIp6}`], mark: m("naown") },
      udpToNeighbour: { spec: [`eth=self,${nbMac}`, `ip4=${net.workloadIp4},${nb!.ip4}`, "udp=40004,9"], mark: m("udp") },
    };
  }

  it("named MAC and addresses, denylist: every attack is dropped at the workload's port; its own ARP, ND and IP pass", async () => {
    const { filter, net, nb } = w!;
    await filter.attach(ifaceSpec(id, slot++, net.hostIf, { guards: named() }), policy("denylist", []));
    try {
      const events = eventLog(filter);
      const bad = attacks("a");
      const good = legit("a");
      const [atNeighbour, atGateway] = await fire(w!, [...Object.values(bad), ...Object.values(good)], sniffers());
      for (const [name, s] of Object.entries(bad)) {
        expect(atNeighbour!.get(s.mark), `${name} at the neighbour`).toBe(0);
        expect(atGateway!.get(s.mark), `${name} at the gateway`).toBe(0);
      }
      expect(atNeighbour!.get(good.gratuitousOwn!.mark)).toBeGreaterThan(0);
      expect(atNeighbour!.get(good.arpProbe!.mark)).toBeGreaterThan(0);
      expect(atNeighbour!.get(good.naOwn!.mark)).toBeGreaterThan(0);
      expect(atNeighbour!.get(good.udpToNeighbour!.mark)).toBeGreaterThan(0);
      const spoof = await events.find((e) => e.family === 0 && e.reason === "spoofed" && e.dstPort === 0x0806);
      expect(spoof).toMatchObject({ src: w!.wlMac, verdict: "blocked" });
      expect(await events.find((e) => e.family === 0 && e.reason === "non-ip")).toMatchObject({ dstPort: 0x88b5, dst: BCAST });
      expect(await events.find((e) => e.family === 0 && e.reason === "spoofed" && e.src === FAKE_MAC)).toMatchObject({ dstPort: 0x0800 });
      events.stop();
      // The workload resolves and reaches its neighbour for real (ARP request + reply pass).
      await w!.sb.exec(net.workloadNs, ["ip", "neigh", "flush", "dev", "wl0"]);
      expect(await probe(w!.sb, net.workloadNs, "icmp", nb!.ip4, { timeoutMs: 3000 })).toBe(true);
      expect((await w!.sb.exec(nb!.ns, ["ip", "neigh", "show", net.workloadIp4])).stdout).toContain(w!.wlMac);
    } finally {
      await filter.detach(id);
    }
  });

  it("disabled mode and the allow-non-IP guard let non-IP frames through; spoofing stays dropped", async () => {
    const { filter, net } = w!;
    for (const [mode, g] of [["disabled", named()], ["denylist", { ...named(), allowNonIp: true }]] as const) {
      await filter.attach(ifaceSpec(id, slot++, net.hostIf, { guards: g }), policy(mode, []));
      try {
        const bad = attacks(`b${mode[0]}`);
        const shots = [bad.nonIp!, bad.arpGatewayToNeighbour!, bad.spoofedSourceMac!];
        const [atNeighbour] = await fire(w!, shots, sniffers().slice(0, 1));
        expect(atNeighbour!.get(bad.nonIp!.mark), `non-IP, ${mode}`).toBeGreaterThan(0);
        expect(atNeighbour!.get(bad.arpGatewayToNeighbour!.mark), `forged ARP, ${mode}`).toBe(0);
        expect(atNeighbour!.get(bad.spoofedSourceMac!.mark), `spoofed source MAC, ${mode}`).toBe(0);
      } finally {
        await filter.detach(id);
      }
    }
  });

  it("without the workload's MAC and addresses named, ARP is only checked for being Ethernet/IPv4: name them on shared bridges", async () => {
    const { filter, net } = w!;
    await filter.attach(ifaceSpec(id, slot++, net.hostIf), policy("denylist", []));
    try {
      const bad = attacks("c");
      const [atNeighbour] = await fire(w!, [bad.arpGatewayToNeighbour!, bad.arpNotEthernet!, bad.nonIp!], sniffers().slice(0, 1));
      expect(atNeighbour!.get(bad.arpGatewayToNeighbour!.mark)).toBeGreaterThan(0);
      expect(atNeighbour!.get(bad.arpNotEthernet!.mark)).toBe(0);
      expect(atNeighbour!.get(bad.nonIp!.mark)).toBe(0);
    } finally {
      await filter.detach(id);
    }
  });
});
