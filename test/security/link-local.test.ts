import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allow, policy } from "../helpers/kernel-filter-fixture.js";
import { probe } from "../helpers/sandbox.js";
import { marker } from "./tools/nfpkt.js";
import { closeWorld, eventLog, fire, guards, ifaceSpec, securityWorld, type Shot, type World } from "./world.js";

const PORT = 7211;
const LL4 = "169.254.7.10";

/**
 * Issue 10 item 2: all of fe80::/10 used to pass in every mode, so a workload reached any service
 * of the host or of a bridged neighbour over link-local TCP/UDP, even in block-all. Link-local
 * destinations (fe80::/10 and 169.254/16) are now closed: only an allow entry inside their range
 * or the open-link-local guard lets them through; the denylist default does not.
 */
describe("link-local destinations (item 2) are closed unless explicitly opened", () => {
  let w: World | undefined;
  const id = `sec-ll-${process.pid}`;
  let slot = 80;

  beforeAll(async () => {
    w = await securityWorld("secll");
    const { sb, net } = w;
    await sb.echoServer(net.serverNs, PORT);
    // An IPv4 link-local service on the far side, routed from the workload.
    await sb.exec(net.serverNs, ["ip", "addr", "add", `${LL4}/32`, "dev", "sv0"]);
    await sb.exec(net.workloadNs, ["ip", "route", "add", `${LL4}/32`, "dev", "wl0", "src", net.workloadIp4]);
  });
  afterAll(async () => {
    await closeWorld(w);
  });

  const ll = () => `${w!.serverLL}%wl0`;
  async function reach(kind: "tcp" | "udp", ip: string, cgroup?: string, timeoutMs = 800): Promise<boolean> {
    return probe(w!.sb, w!.net.workloadNs, kind, ip, { port: PORT, cgroup, timeoutMs });
  }
  function crafted(tag: string): Shot[] {
    const { net, serverMac, wlLL, serverLL } = w!;
    return [
      { spec: [`eth=self,${serverMac}`, `ip6=${wlLL},${serverLL},64`, `tcp=40001,${PORT}`], mark: marker(`${tag}t6`) },
      { spec: [`eth=self,${serverMac}`, `ip6=${wlLL},${serverLL},64`, `udp=40001,${PORT}`], mark: marker(`${tag}u6`) },
      { spec: [`eth=self,${serverMac}`, `ip4=${net.workloadIp4},${LL4}`, `udp=40001,${PORT}`], mark: marker(`${tag}u4`) },
    ];
  }

  for (const mode of ["block-all", "denylist"] as const) {
    it(`interface, ${mode}: TCP/UDP to the neighbour's fe80:: and to 169.254/16 never arrive`, async () => {
      const { filter, net } = w!;
      await filter.attach(ifaceSpec(id, slot++, net.hostIf), policy(mode, []));
      try {
        const events = eventLog(filter);
        expect(await reach("tcp", ll())).toBe(false);
        expect(await reach("udp", ll())).toBe(false);
        expect(await reach("tcp", LL4)).toBe(false);
        const shots = crafted(mode[0]!);
        const [atServer] = await fire(w!, shots, [{ ns: net.serverNs, iface: "sv0" }]);
        for (const s of shots) expect(atServer!.get(s.mark), s.mark).toBe(0);
        if (mode === "denylist") {
          expect(await events.find((e) => e.dst === w!.serverLL && e.reason === "local-closed")).toMatchObject({ family: 6, dstPort: PORT });
          expect(await reach("tcp", net.serverIp6[0]!)).toBe(true); // the denylist default still applies elsewhere
        }
        events.stop();
      } finally {
        await filter.detach(id);
      }
    });
  }

  it("legitimate: the open-link-local guard makes them ordinary destinations (denylist passes them)", async () => {
    const { filter, net } = w!;
    await filter.attach(ifaceSpec(id, slot++, net.hostIf, { guards: guards({ openLinkLocal: true }) }), policy("denylist", []));
    try {
      expect(await reach("tcp", ll(), undefined, 3000)).toBe(true);
      expect(await reach("udp", ll(), undefined, 3000)).toBe(true);
      expect(await reach("tcp", LL4, undefined, 3000)).toBe(true);
      const shots = crafted("o");
      const [atServer] = await fire(w!, shots, [{ ns: net.serverNs, iface: "sv0" }]);
      for (const s of shots) expect(atServer!.get(s.mark), s.mark).toBeGreaterThan(0);
    } finally {
      await filter.detach(id);
    }
  });

  it("legitimate: an allow entry inside the range opens it; a broad allow (::/0, 0.0.0.0/0) does not", async () => {
    const { filter, net } = w!;
    await filter.attach(ifaceSpec(id, slot++, net.hostIf), policy("allowlist", [allow("fe80::/10"), allow("169.254.0.0/16")]));
    try {
      expect(await reach("tcp", ll(), undefined, 3000)).toBe(true);
      expect(await reach("tcp", LL4, undefined, 3000)).toBe(true);
      await filter.replacePolicy(id, policy("allowlist", [allow("::/0"), allow("0.0.0.0/0")]));
      expect(await reach("tcp", ll())).toBe(false);
      expect(await reach("tcp", LL4)).toBe(false);
      expect(await reach("tcp", net.serverIp6[0]!, undefined, 3000)).toBe(true);
    } finally {
      await filter.detach(id);
    }
  });

  it("cgroup: a process reaches the neighbour's fe80:: only with an allow entry inside fe80::/10", async () => {
    const { sb, filter } = w!;
    const cg = await sb.cgroup();
    const spec = { id, slot: slot++, target: { kind: "cgroup" as const, path: cg }, dns: { ipv4: null, ipv6: null, port: 0 } };
    await filter.attach(spec, policy("denylist", []));
    try {
      expect(await reach("tcp", ll(), cg)).toBe(false);
      expect(await reach("udp", ll(), cg)).toBe(false);
      await filter.replacePolicy(id, policy("denylist", [allow("fe80::/10")]));
      expect(await reach("tcp", ll(), cg, 3000)).toBe(true);
    } finally {
      await filter.detach(id);
    }
  });
});
