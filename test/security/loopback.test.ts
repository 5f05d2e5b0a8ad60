import dgram from "node:dgram";
import { readFile, writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allow, policy } from "../helpers/kernel-filter-fixture.js";
import { probe } from "../helpers/sandbox.js";
import { marker, sendFrame } from "./tools/nfpkt.js";
import { closeWorld, eventLog, guards, ifaceSpec, securityWorld, type World } from "./world.js";

const PORT = 7231; // a "root-only local service" on the workload namespace's loopback
const DNS = 7240; // this attachment's DNS port; 7241 is another tenant's, the range is 7236-7245

/**
 * Issue 10 item 3: 127/8 and ::1 used to pass in every mode, so a cgroup workload reached the
 * host's local services (metrics, root-only daemons) and other tenants' DNS servers; for an
 * interface, a packet to 127.0.0.1 reached host sockets where route_localnet=1. Loopback is now
 * closed unless an allow entry inside it or the open-loopback guard opens it, and another
 * tenant's DNS port is dropped in every mode.
 */
describe("loopback (item 3): closed by default; other tenants' DNS servers never reachable", () => {
  let w: World | undefined;
  const id = `sec-lo-${process.pid}`;
  let slot = 90;
  let cg: string;

  beforeAll(async () => {
    w = await securityWorld("seclo", { hostAddress: true });
    const { sb, net } = w;
    for (const port of [PORT, DNS, DNS + 1]) await sb.echoServer(net.workloadNs, port); // outside the cgroup
    cg = await sb.cgroup();
  });
  afterAll(async () => {
    await closeWorld(w);
  });

  const reach = (kind: "tcp" | "udp", ip: string, port = PORT, timeoutMs = 800) => probe(w!.sb, w!.net.workloadNs, kind, ip, { port, cgroup: cg, timeoutMs });
  const cgroupSpec = (over: object = {}) => ({ id, slot: slot++, target: { kind: "cgroup" as const, path: cg }, dns: { ipv4: null, ipv6: null, port: 0 }, ...over });

  it("cgroup, denylist: 127.0.0.1 and ::1 are closed (reason local-closed); the rest of the denylist default applies", async () => {
    const { filter, net } = w!;
    await filter.attach(cgroupSpec(), policy("denylist", []));
    try {
      const events = eventLog(filter);
      for (const kind of ["tcp", "udp"] as const) {
        expect(await reach(kind, "127.0.0.1"), `${kind} 127.0.0.1`).toBe(false);
        expect(await reach(kind, "::1"), `${kind} ::1`).toBe(false);
      }
      expect(await reach("tcp", "127.0.0.2")).toBe(false);
      expect(await events.find((e) => e.dst === "127.0.0.1" && e.reason === "local-closed")).toMatchObject({ family: 4, dstPort: PORT });
      events.stop();
      await w!.sb.echoServer(net.serverNs, PORT);
      expect(await reach("tcp", net.serverIp4[0]!, PORT, 3000)).toBe(true);
    } finally {
      await filter.detach(id);
    }
  });

  it("legitimate: an allow entry inside 127/8 (::1) or the open-loopback guard opens it; 0.0.0.0/0 does not", async () => {
    const { filter } = w!;
    await filter.attach(cgroupSpec(), policy("allowlist", [allow("127.0.0.0/8"), allow("::1/128")]));
    try {
      expect(await reach("tcp", "127.0.0.1", PORT, 3000)).toBe(true);
      expect(await reach("udp", "::1", PORT, 3000)).toBe(true);
      await filter.replacePolicy(id, policy("allowlist", [allow("0.0.0.0/0"), allow("::/0")]));
      expect(await reach("tcp", "127.0.0.1")).toBe(false);
      expect(await reach("tcp", "::1")).toBe(false);
    } finally {
      await filter.detach(id);
    }
    await filter.attach(cgroupSpec({ guards: guards({ openLoopback: true }) }), policy("denylist", []));
    try {
      expect(await reach("tcp", "127.0.0.1", PORT, 3000)).toBe(true);
      expect(await reach("tcp", "::1", PORT, 3000)).toBe(true);
    } finally {
      await filter.detach(id);
    }
  });

  for (const mode of ["disabled", "block-all"] as const) {
    it(`cgroup, ${mode} (loopback opened): its own DNS port passes, another tenant's DNS port in the range never does`, async () => {
      const { filter } = w!;
      const dns = { ipv4: "127.0.0.1", ipv6: "::1", port: DNS, portMin: DNS - 4, portMax: DNS + 5 };
      await filter.attach(cgroupSpec({ dns, guards: guards({ openLoopback: true }) }), policy(mode, []));
      try {
        const events = eventLog(filter);
        for (const kind of ["udp", "tcp"] as const) {
          expect(await reach(kind, "127.0.0.1", DNS, 3000), `${kind} own DNS`).toBe(true);
          expect(await reach(kind, "::1", DNS, 3000), `${kind} own DNS (IPv6)`).toBe(true);
          expect(await reach(kind, "127.0.0.1", DNS + 1), `${kind} other tenant's DNS`).toBe(false);
          expect(await reach(kind, "::1", DNS + 1), `${kind} other tenant's DNS (IPv6)`).toBe(false);
        }
        // Outside the DNS range the mode decides (disabled: pass).
        expect(await reach("tcp", "127.0.0.1", PORT, mode === "disabled" ? 3000 : 800)).toBe(mode === "disabled");
        expect(await events.find((e) => e.reason === "other-tenant-dns" && e.dstPort === DNS + 1)).toMatchObject({ verdict: "blocked" });
        events.stop();
      } finally {
        await filter.detach(id);
      }
    });
  }

  it("interface: a frame to 127.0.0.1 reaches no host socket even where route_localnet=1 (on our own bridge)", async () => {
    const { sb, filter, net } = w!;
    // route_localnet on the bridge this test created (never the root namespace's lo/all/default).
    await writeFile(`/proc/sys/net/ipv4/conf/${net.bridge}/route_localnet`, "1");
    const bridgeMac = (await readFile(`/sys/class/net/${net.bridge}/address`, "utf8")).trim();
    // A host socket on 127.0.0.1 in the root namespace, on a port of ours: it counts what arrives.
    const sock = dgram.createSocket("udp4");
    const got: string[] = [];
    sock.on("message", (m) => got.push(m.toString()));
    await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
    const port = sock.address().port;
    const send = (mark: string) => sendFrame(sb, net.workloadNs, "wl0", [`eth=self,${bridgeMac}`, `ip4=${net.workloadIp4},127.0.0.1`, `udp=40002,${port}`, `mark=${mark}`]);
    try {
      await filter.attach(ifaceSpec(id, slot++, net.hostIf), policy("denylist", []));
      const closed = marker("lo-closed");
      await send(closed);
      await filter.detach(id);
      // The same frame with loopback opened on purpose: it does arrive (the path is real).
      await filter.attach(ifaceSpec(id, slot++, net.hostIf, { guards: guards({ openLoopback: true }) }), policy("denylist", []));
      const opened = marker("lo-open");
      await send(opened);
      for (let i = 0; i < 40 && !got.some((g) => g.includes(opened)); i++) await new Promise((r) => setTimeout(r, 50));
      expect(got.some((g) => g.includes(opened)), "with open-loopback the frame reaches the host socket").toBe(true);
      expect(got.filter((g) => g.includes(closed))).toEqual([]);
    } finally {
      sock.close();
      await filter.detach(id).catch(() => undefined);
    }
  });
});
