import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { CLOSED_GUARDS, type KernelPacketEvent } from "../../../daemon/src/datapath/filter.js";
import { allow, closeFilterSandbox, noDns, echoCollector, filterSandbox, interfaceSpec, policy, sleep, type FilterSandbox } from "../../helpers/kernel-filter-fixture.js";
import { fixture, probe, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";

// Allowed-flow events (issue 14, netfence.events=allowed-flows → NF_GUARD_ALLOWED_FLOWS): a workload
// really opens TCP connections to an allowed destination and sends hundreds of packets on them; the
// kernel reports the first packet of each flow, once, as an "allowed" event. Without the option
// allowed packets are never reported, while blocked packets still are.

const PORT = 7243;

describe("allowed-flow events: the first packet of each new flow, not every packet", () => {
  let ctx: FilterSandbox | undefined;
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;

  beforeAll(async () => {
    ctx = await filterSandbox("afl", PORT);
    ({ sb, net, filter } = ctx);
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  /** Collects the events of attachment `id` until stop(). */
  function collect(id: string): { seen: KernelPacketEvent[]; stop: () => Promise<void> } {
    const seen: KernelPacketEvent[] = [];
    const iter = filter.events()[Symbol.asyncIterator]();
    let reading = true;
    const reader = (async () => {
      while (reading) {
        const n = await iter.next();
        if (n.done) return;
        if (n.value.attachmentId === id) seen.push(n.value);
      }
    })();
    return {
      seen,
      stop: async () => {
        reading = false;
        await iter.return?.();
        await reader.catch(() => undefined);
      },
    };
  }

  async function waitFor(cond: () => boolean, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond() && Date.now() < deadline) await sleep(25);
  }

  it("flag on: a TCP stream of hundreds of packets gives one allowed event; a second connection a second; a blocked packet its blocked event", async () => {
    const id = `t-aflow-on-${process.pid}`;
    const dst = net.serverIp4[0]!;
    const dst6 = net.serverIp6[0]!;
    const blockedDst = net.serverIp4[1]!;
    await filter.attach(
      interfaceSpec(id, 21, net.hostIf, { guards: { ...CLOSED_GUARDS, allowedFlows: true } }),
      policy("allowlist", [allow(`${dst}/32`), allow(`${dst6}/128`)]),
    );
    const ev = collect(id);
    try {
      const allowedBefore = (await filter.counters([id])).get(id)!.allowed;
      const c = echoCollector();
      const child = sb.spawn(net.workloadNs, [process.execPath, fixture("stream-client.mjs"), dst, String(PORT), "2"], { onLine: c.onLine });
      await c.connected;
      await waitFor(() => c.echoes.length >= 200, 10_000);
      child.kill("SIGKILL");
      expect(c.echoes.length, "the stream flows (allowed)").toBeGreaterThanOrEqual(200);
      const allowedPackets = (await filter.counters([id])).get(id)!.allowed - allowedBefore;
      expect(allowedPackets).toBeGreaterThanOrEqual(200n);

      const tcpTo = (d: string) => ev.seen.filter((e) => e.verdict === "allowed" && e.dst === d && e.dstPort === PORT && e.protocol === 6);
      await waitFor(() => tcpTo(dst).length >= 1, 3000);
      await sleep(300); // anything more the stream could have produced is in the ring buffer by now
      const first = tcpTo(dst);
      expect(first, `one event for ${allowedPackets} allowed packets of one flow`).toHaveLength(1);
      expect(first[0]).toMatchObject({ verdict: "allowed", reason: "allow-cidr", rule: `${dst}/32`, src: net.workloadIp4, family: 4, suppressed: 0 });

      // A second connection (a new source port): a second flow, a second event.
      expect(await probe(sb, net.workloadNs, "tcp", dst, { port: PORT })).toBe(true);
      await waitFor(() => tcpTo(dst).length >= 2, 3000);
      const two = tcpTo(dst);
      expect(two).toHaveLength(2);
      expect(two[1]!.srcPort).not.toBe(two[0]!.srcPort);

      // IPv6 flows are reported too.
      expect(await probe(sb, net.workloadNs, "tcp", dst6, { port: PORT })).toBe(true);
      await waitFor(() => tcpTo(dst6).length >= 1, 3000);
      expect(tcpTo(dst6)).toHaveLength(1);
      expect(tcpTo(dst6)[0]).toMatchObject({ family: 6, rule: `${dst6}/128`, reason: "allow-cidr" });

      // A blocked packet still gives its blocked event (and no allowed one).
      expect(await probe(sb, net.workloadNs, "tcp", blockedDst, { port: PORT, timeoutMs: 500 })).toBe(false);
      await waitFor(() => ev.seen.some((e) => e.dst === blockedDst), 3000);
      const toBlocked = ev.seen.filter((e) => e.dst === blockedDst);
      expect(toBlocked.length).toBeGreaterThanOrEqual(1);
      expect(toBlocked.every((e) => e.verdict === "blocked" && e.reason === "not-in-allowlist")).toBe(true);
      expect((await filter.counters([id])).get(id)!.eventsLost).toBe(0n);
    } finally {
      await ev.stop();
      await filter.detach(id).catch(() => undefined);
    }
  }, 60_000);

  it("cgroup attachments too: 50 UDP datagrams from one socket are one flow, a second socket a second", async () => {
    const id = `t-aflow-cg-${process.pid}`;
    const dst = net.serverIp4[4]!;
    const cg = await sb.cgroup();
    await filter.attach(
      { id, slot: 23, target: { kind: "cgroup", path: cg }, dns: noDns, guards: { ...CLOSED_GUARDS, allowedFlows: true } },
      policy("allowlist", [allow(`${dst}/32`)]),
    );
    const ev = collect(id);
    try {
      // The burst fixture sends from one fixed source port: one flow however many datagrams.
      const r = await sb.exec(net.workloadNs, ["python3", fixture("udp-burst.py"), dst, String(PORT), "50", "40124"], { cgroup: cg, timeoutMs: 20_000 });
      expect((JSON.parse(r.stdout.trim()) as { sent: number }).sent).toBe(50);
      expect(await probe(sb, net.workloadNs, "udp", dst, { port: PORT, cgroup: cg })).toBe(true);
      const udp = () => ev.seen.filter((e) => e.verdict === "allowed" && e.dst === dst && e.dstPort === PORT && e.protocol === 17);
      await waitFor(() => udp().length >= 2, 3000);
      await sleep(300);
      expect(udp()).toHaveLength(2);
      expect(udp()[0]!.srcPort).toBe(40124);
      expect(udp()[1]!.srcPort).not.toBe(40124);
    } finally {
      await ev.stop();
      await filter.detach(id).catch(() => undefined);
    }
  }, 60_000);

  it("flag off: allowed traffic gives no event at all, blocked packets still do", async () => {
    const id = `t-aflow-off-${process.pid}`;
    const dst = net.serverIp4[2]!;
    const blockedDst = net.serverIp4[3]!;
    await filter.attach(interfaceSpec(id, 22, net.hostIf), policy("allowlist", [allow(`${dst}/32`)]));
    const ev = collect(id);
    try {
      for (let i = 0; i < 3; i++) expect(await probe(sb, net.workloadNs, "tcp", dst, { port: PORT })).toBe(true);
      // Sent after the allowed connections: once its event is read, any earlier event would have been too.
      expect(await probe(sb, net.workloadNs, "tcp", blockedDst, { port: PORT, timeoutMs: 500 })).toBe(false);
      await waitFor(() => ev.seen.some((e) => e.dst === blockedDst), 3000);
      expect(ev.seen.some((e) => e.dst === blockedDst && e.verdict === "blocked")).toBe(true);
      expect(ev.seen.filter((e) => e.verdict === "allowed")).toEqual([]);
      expect((await filter.counters([id])).get(id)!.allowed).toBeGreaterThanOrEqual(3n);
    } finally {
      await ev.stop();
      await filter.detach(id).catch(() => undefined);
    }
  }, 60_000);
});
