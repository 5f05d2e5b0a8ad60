import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { parseCidr } from "@netfence/proto/parse";
import { type FilterSandbox, closeFilterSandbox, filterSandbox, interfaceSpec, noDns, policy, sleep } from "../../helpers/kernel-filter-fixture.js";
import { fixture, probe, ROOT_NS, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";

// Issue 15, lockout safety: a protected "from" entry (NF_PROT_FROM) lets the replies of a server bound to
// the management port in the HOST's network namespace (sshd) through in every mode — for cgroup
// attachments, where the kernel knows the sending socket. Not let through: a socket sending from another
// port, a UDP socket on the port, a bare SYN from the port (an outgoing connection), any socket of a
// workload's own network namespace (root there can fake a reply: a listener fed a spoofed SYN, TCP_REPAIR),
// and a TC workload forging the source port (a sniffer on the far side sees nothing).
const PORT = 7431; // echo server in the server namespace (the "management client" side)
const MPORT = 7432; // the management port: a server bound to it in the workload cgroup

describe("management replies from the protected port", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  let client: string;

  beforeAll(async () => {
    ctx = await filterSandbox("mgmt", PORT, { hostAddress: true }); // the bridge has an address: a server in the root namespace
    ({ sb, net, filter } = ctx);
    client = net.serverIp4[0]!;
    await filter.setProtected([{ cidr: parseCidr(`${client}/32`), protocol: 6, port: MPORT, from: true }]);
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  it("cgroup, block-all: a server of the host's namespace bound to the port answers; other ports, outgoing connections and UDP from the port stay blocked", async () => {
    const id = `t-mgmt-cg-${process.pid}`;
    const cg = await sb.cgroup();
    const host = net.hostIp4!;
    // Servers inside the cgroup, in the root namespace, bound to the test bridge's address only.
    const servers = [await serverIn(sb, ROOT_NS, MPORT, cg, host), await serverIn(sb, ROOT_NS, MPORT + 1, cg, host)];
    await filter.attach({ id, slot: 61, target: { kind: "cgroup", path: cg }, dns: noDns }, policy("block-all", []));
    try {
      expect(await probe(sb, net.serverNs, "tcp", host, { port: MPORT }), "the management server's replies").toBe(true);
      expect(await probe(sb, net.serverNs, "tcp", host, { port: MPORT + 1, timeoutMs: 600 }), "a server on another port").toBe(false);
      expect(await probe(sb, net.workloadNs, "tcp", client, { port: PORT, cgroup: cg, timeoutMs: 600 }), "an outgoing connection to the management network").toBe(false);
      // The management server's own UDP socket on the port answers a UDP probe: not a TCP stream, dropped.
      expect(await probe(sb, net.serverNs, "udp", host, { port: MPORT, timeoutMs: 600 }), "UDP replies from the management port").toBe(false);
      await filter.detach(id);
      expect(await probe(sb, net.serverNs, "udp", host, { port: MPORT }), "control: the same UDP probe without the filter").toBe(true);
    } finally {
      for (const s of servers) s.kill("SIGKILL");
      await sleep(200);
    }
  });

  it("attack: a workload's own network namespace gets no management exception — neither a server answering on the port nor TCP_REPAIR segments (sniffer on the far side)", async () => {
    const id = `t-mgmt-ns-${process.pid}`;
    const cg = await sb.cgroup();
    await filter.attach({ id, slot: 64, target: { kind: "cgroup", path: cg }, dns: noDns }, policy("block-all", []));
    const server = await serverIn(sb, net.workloadNs, MPORT, cg);
    const other = await sb.neighbour(net);
    const sniff = await sniffFrom(sb, net, [net.workloadIp4, other.ip4]);
    const repair = ["/usr/bin/python3", fixture("tcp-repair-send.py"), client, String(PORT), String(MPORT), "5"];
    try {
      expect(await probe(sb, net.serverNs, "tcp", net.workloadIp4, { port: MPORT, timeoutMs: 600 }), "a server in the workload's namespace on the port").toBe(false);
      await filter.detach(id);
      expect(await probe(sb, net.serverNs, "tcp", net.workloadIp4, { port: MPORT }), "control: the server answers without the filter").toBe(true);
      await filter.attach({ id, slot: 64, target: { kind: "cgroup", path: cg }, dns: noDns }, policy("block-all", []));
      // The repaired sockets, from another namespace of the workload's (the port is free there).
      const r = await sb.exec(other.ns, repair, { cgroup: cg, allowFail: true, timeoutMs: 10_000 });
      expect(r.stdout).toMatch(/^sent \d/);
      await sleep(300);
      expect(sniff.seen.filter((p) => p.sport === MPORT && p.src === other.ip4), "repaired segments that reached the far side").toEqual([]);
      // Control: without the filter the same repaired sockets' segments arrive.
      await filter.detach(id);
      await sb.exec(other.ns, repair, { cgroup: cg, allowFail: true, timeoutMs: 10_000 });
      for (let i = 0; i < 20 && !sniff.seen.some((p) => p.sport === MPORT && p.src === other.ip4); i++) await sleep(100);
      expect(sniff.seen.some((p) => p.sport === MPORT && p.src === other.ip4), "control: repaired segments seen without the filter").toBe(true);
    } finally {
      sniff.stop();
      server.kill("SIGKILL");
      await sleep(200);
    }
  });

  it("attack: a cgroup workload connecting out FROM the management port (its own bound socket) reaches nothing (sniffer on the far side)", async () => {
    // A workload that can bind the management port (root in its own network namespace, or sshd not
    // bound on every address) opens a connection from it to the management network on any port: its
    // SYN is a stream socket's packet from the port, but a bare SYN is never a reply.
    const id = `t-mgmt-out-${process.pid}`;
    const cg = await sb.cgroup();
    await filter.attach({ id, slot: 63, target: { kind: "cgroup", path: cg }, dns: noDns }, policy("block-all", []));
    const sniff = await sniffFrom(sb, net);
    try {
      expect(await probe(sb, net.workloadNs, "tcp", client, { port: PORT, cgroup: cg, localPort: MPORT, timeoutMs: 800 }), "connect from the management port").toBe(false);
      await sleep(300);
      expect(sniff.seen.filter((p) => p.sport === MPORT), "segments from the management port that reached the far side").toEqual([]);
      // Control: the same connection without the filter completes (and the sniffer sees it).
      await filter.detach(id);
      expect(await probe(sb, net.workloadNs, "tcp", client, { port: PORT, cgroup: cg, localPort: MPORT })).toBe(true);
      for (let i = 0; i < 20 && !sniff.seen.some((p) => p.sport === MPORT); i++) await sleep(100);
      expect(sniff.seen.some((p) => p.sport === MPORT)).toBe(true);
    } finally {
      sniff.stop();
    }
  });

  it("attack: a TC workload forging the management source port is still dropped (sniffer on the far side)", async () => {
    const id = `t-mgmt-if-${process.pid}`;
    await filter.attach(interfaceSpec(id, 62, net.hostIf), policy("block-all", []));
    const { seen, stop } = await sniffFrom(sb, net);
    const craft = ["python3", fixture("craft-tcp.py"), net.workloadIp4, String(MPORT), client, String(PORT), "20"];
    await sb.exec(net.workloadNs, craft, { timeoutMs: 10_000 });
    // A real server bound to the port in the workload answering a client: its replies are dropped too.
    await serverIn(sb, net.workloadNs, MPORT);
    expect(await probe(sb, net.serverNs, "tcp", net.workloadIp4, { port: MPORT, timeoutMs: 600 })).toBe(false);
    await sleep(300);
    expect(seen.filter((p) => p.sport === MPORT), "forged segments that reached the far side").toEqual([]);
    // Control: with the filter disabled the same forged segments do arrive (the sniffer and the forgery work).
    await filter.setMode(id, "disabled", false);
    await sb.exec(net.workloadNs, craft, { timeoutMs: 10_000 });
    for (let i = 0; i < 20 && !seen.some((p) => p.sport === MPORT); i++) await sleep(100);
    expect(seen.filter((p) => p.sport === MPORT).length).toBeGreaterThan(0);
    stop();
    await filter.detach(id);
  });
});

/** TCP segments from the workload's addresses (`from`) arriving in the server namespace (sniffer on sv0), from when it answers "ready". */
async function sniffFrom(sb: Sandbox, net: SandboxNetwork, from: readonly string[] = [net.workloadIp4]): Promise<{ seen: Array<{ src: string; sport: number; dport: number }>; stop: () => void }> {
  const seen: Array<{ src: string; sport: number; dport: number }> = [];
  let ready!: () => void;
  const sniffing = new Promise<void>((r) => (ready = r));
  const sniffer = sb.spawn(net.serverNs, ["python3", fixture("sniff.py"), "sv0"], {
    onLine: (l) => {
      if (l === "ready") return ready();
      try {
        const p = JSON.parse(l) as { dir: string; src: string; sport: number; dport: number; proto: number };
        if (p.dir === "in" && p.proto === 6 && from.includes(p.src)) seen.push(p);
      } catch {
        /* not JSON */
      }
    },
  });
  await sniffing;
  return { seen, stop: () => void sniffer.kill("SIGKILL") };
}

/** An echo server (TCP and UDP) on `port` in `ns` (inside `cg` if given; on `bindTo` only if given), waited for. */
async function serverIn(sb: Sandbox, ns: string, port: number, cg?: string, bindTo?: string): Promise<ChildProcess> {
  let ready!: () => void;
  const listening = new Promise<void>((r) => (ready = r));
  const child = sb.spawn(ns, [process.execPath, fixture("echo-server.mjs"), String(port), ...(bindTo ? [bindTo] : [])], { cgroup: cg, onLine: (l) => (l.includes("listening") ? ready() : undefined) });
  await Promise.race([listening, new Promise((_, rej) => setTimeout(() => rej(new Error("server did not start")), 10_000))]);
  return child;
}
