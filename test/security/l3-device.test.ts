import dgram from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveTarget } from "../../daemon/src/attachments/target.js";
import type { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import { allow, policy, startFilter } from "../helpers/kernel-filter-fixture.js";
import { requireKernel, Sandbox, sh } from "../helpers/sandbox.js";
import { ensureNfpkt, marker } from "./tools/nfpkt.js";
import { eventLog, ifaceSpec } from "./world.js";

/**
 * Issue 10 item 6: attached to a tun device, the TC program used to read the "ethertype" out of
 * the IP source address and pass everything. L3 devices (tun, wireguard: ARPHRD_NONE; raw IP) are
 * now parsed from the IP header; other link types (loopback, ipip, …) are refused with a clear
 * error. The tun device is ours (root namespace: the loader attaches by ifindex in its own
 * namespace); packets written to its fd are delivered to sockets on its own addresses, which count
 * what arrives. The refused link types are tun devices re-typed with TUNSETLINK, so no real
 * loopback or tunnel device is ever touched.
 */
describe("L3 devices (item 6): tun is parsed from the IP header; other link types are refused", () => {
  let sb: Sandbox;
  let filter: KernelFilter;
  let tun: string;
  const id = `sec-l3-${process.pid}`;
  const n = process.pid % 250;
  const v4 = (last: number) => `100.70.${n}.${last}`;
  const v6 = (last: number) => `fd70:${(process.pid % 65536).toString(16)}::${last}`;
  const received: string[] = [];
  const sockets: dgram.Socket[] = [];
  let port = 0;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("secl3");
    tun = `${sb.tag}t`;
    sb.onCleanup(async () => {
      for (const dev of [tun, `${sb.tag}i`, `${sb.tag}l`]) await sh("ip", ["link", "del", dev], { allowFail: true });
    });
    expect((await sh(ensureNfpkt(), ["mktun", tun])).stdout.trim()).toBe("ok");
    await sh("ip", ["link", "set", tun, "up"]);
    for (const last of [1, 3]) {
      await sh("ip", ["addr", "add", `${v4(last)}/29`, "dev", tun]);
      await sh("ip", ["-6", "addr", "add", `${v6(last)}/64`, "dev", tun, "nodad"]);
    }
    // Sockets on the tun's own addresses: the far side of what the "workload" writes to the tun fd.
    for (const addr of [v4(1), v4(3), v6(1), v6(3)]) {
      const s = dgram.createSocket(addr.includes(":") ? "udp6" : "udp4");
      s.on("message", (m) => received.push(m.toString()));
      await new Promise<void>((r) => s.bind(port, addr, () => r()));
      port = s.address().port;
      sockets.push(s);
    }
    filter = await startFilter(sb);
  });
  afterAll(async () => {
    for (const s of sockets) s.close();
    await filter?.detach(id).catch(() => undefined);
    await filter?.close();
    await sb?.cleanup();
  });

  /** Writes UDP packets with a marker to the tun fd; returns the marker. */
  async function write(src: string, dst: string, name: string): Promise<string> {
    const mark = marker(name);
    const fam = dst.includes(":") ? "ip6" : "ip4";
    const out = (await sh(ensureNfpkt(), ["tun", tun, "3", `${fam}=${src},${dst}`, `udp=40005,${port}`, `mark=${mark}`])).stdout.trim();
    expect(out).toBe("sent 3");
    return mark;
  }
  const arrived = async (mark: string, expected: boolean) => {
    for (let i = 0; i < (expected ? 60 : 12) && !received.some((r) => r.includes(mark)); i++) await new Promise((r) => setTimeout(r, 50));
    return received.some((r) => r.includes(mark));
  };

  it("a tun device is attached with the L3 parse path: allowlist verdicts on real packets, IPv4 and IPv6", async () => {
    const r = await filter.attach(ifaceSpec(id, 120, tun), policy("allowlist", [allow(`${v4(1)}/32`), allow(`${v6(1)}/128`)]));
    expect(r.ifindex).toBeGreaterThan(0);
    const events = eventLog(filter);
    expect(await arrived(await write(v4(2), v4(1), "t4ok"), true), "allowed IPv4").toBe(true);
    expect(await arrived(await write(v6(2), v6(1), "t6ok"), true), "allowed IPv6").toBe(true);
    expect(await arrived(await write(v4(2), v4(3), "t4no"), false), "IPv4 not in the allowlist").toBe(false);
    expect(await arrived(await write(v6(2), v6(3), "t6no"), false), "IPv6 not in the allowlist").toBe(false);
    // The event carries the real addresses: the header was read at the right offset.
    expect(await events.find((e) => e.dst === v4(3))).toMatchObject({ family: 4, src: v4(2), protocol: 17, dstPort: port, reason: "not-in-allowlist" });
    expect(await events.find((e) => e.dst === v6(3))).toMatchObject({ family: 6, src: v6(2), protocol: 17, dstPort: port });
    events.stop();
    await filter.setMode(id, "block-all", false);
    expect(await arrived(await write(v4(2), v4(1), "t4blk"), false), "block-all").toBe(false);
    const c = (await filter.counters([id])).get(id)!;
    expect(c.blocked).toBeGreaterThanOrEqual(9n);
    expect(c.allowed).toBeGreaterThanOrEqual(6n);
    await filter.detach(id);
  });

  it("loopback- and ipip-type devices are refused before anything is loaded, with the link type and what is supported", async () => {
    for (const [dev, type, name] of [[`${sb.tag}i`, 768, "ipip"], [`${sb.tag}l`, 772, "loopback"]] as const) {
      expect((await sh(ensureNfpkt(), ["mktun", dev, String(type)])).stdout.trim()).toBe("ok");
      expect((await sh("cat", [`/sys/class/net/${dev}/type`])).stdout.trim()).toBe(String(type));
      const err = await filter.attach(ifaceSpec(id, 121, dev), policy("allowlist", [])).catch((e: unknown) => e as Error & { code?: string });
      expect(err).toMatchObject({ code: "INVALID_ARGUMENT" });
      expect((err as Error).message).toContain(`link type ${type} (${name})`);
      expect((err as Error).message).toMatch(/ARPHRD_ETHER.*tun/);
      expect(await filter.listPinned()).not.toContain(id);
      // The daemon refuses it where targets are resolved, before the control plane is asked.
      expect(() => resolveTarget({ kind: "interface", name: dev, direction: "ingress" }, null)).toThrow(/link type/);
    }
    expect(() => resolveTarget({ kind: "interface", name: tun, direction: "ingress" }, null)).not.toThrow();
  });
});
