import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import type { KernelPacketEvent } from "../../../daemon/src/datapath/filter.js";
import { closeFilterSandbox, filterSandbox, interfaceSpec, policy, sleep, type FilterSandbox } from "../../helpers/kernel-filter-fixture.js";
import { fixture, probe, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";

// Seed 000's deny-log throttle, proven on real packets: 10,000 identical blocked packets within
// 5 s give ONE event; the packets folded into it are counted and carried by the next event for the
// same flow, which comes only once the 10 s window has passed.

const PORT = 7241;
const BURST = 10_000;
const SPORT = 40_123;

describe("event throttling (seed 000): one event per identical blocked flow per 10 s, the rest counted", () => {
  let ctx: FilterSandbox | undefined;
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  const id = `t-throttle-${process.pid}`;

  beforeAll(async () => {
    ctx = await filterSandbox("thr", PORT);
    ({ sb, net, filter } = ctx);
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  /** Sends `count` identical UDP datagrams from the workload, pinned to CPU 0 (one per-CPU fold). */
  async function burst(dst: string, count: number): Promise<{ sent: number; ms: number }> {
    const r = await sb.exec(net.workloadNs, ["taskset", "-c", "0", "python3", fixture("udp-burst.py"), dst, String(PORT), String(count), String(SPORT)], { timeoutMs: 20_000 });
    return JSON.parse(r.stdout.trim()) as { sent: number; ms: number };
  }

  it("10,000 identical blocked packets in < 5 s → one event; after 10 s the next one carries the 9,999 suppressed", async () => {
    const dst = net.serverIp4[3]!;
    // Resolve the server's MAC first (no filter yet), so no datagram waits in the neighbour queue.
    expect(await probe(sb, net.workloadNs, "udp", dst, { port: PORT, timeoutMs: 1000 })).toBe(true);
    await filter.attach(interfaceSpec(id, 11, net.hostIf), policy("block-all", []));

    const seen: KernelPacketEvent[] = [];
    const others: KernelPacketEvent[] = [];
    const it = filter.events()[Symbol.asyncIterator]();
    let reading = true;
    const reader = (async () => {
      while (reading) {
        const n = await it.next();
        if (n.done) return;
        if (n.value.attachmentId === id && n.value.dst === dst && n.value.dstPort === PORT) seen.push(n.value);
        else if (n.value.attachmentId === id && n.value.dstPort === PORT) others.push(n.value);
      }
    })();
    try {
      const before = (await filter.counters([id])).get(id)!.blocked;
      const t0 = Date.now();
      const sent = await burst(dst, BURST);
      expect(sent.sent).toBe(BURST);
      expect(sent.ms).toBeLessThan(5000);
      const blocked = (await filter.counters([id])).get(id)!.blocked - before;
      expect(blocked).toBeGreaterThanOrEqual(BigInt(BURST)); // dropped (the workload's own ND/MLD chatter may add one or two)
      // Stay inside the 10 s window, well after the burst: still exactly one event, nothing folded yet.
      await sleep(Math.max(0, 8_000 - (Date.now() - t0)));
      expect(seen).toHaveLength(1);
      expect(seen[0]).toMatchObject({ verdict: "blocked", reason: "mode:block-all", protocol: 17, srcPort: SPORT, suppressed: 0 });

      // Another blocked flow on the same CPU ends the per-CPU fold: what was folded there belongs to
      // the first flow, not to this one (its event says 0 suppressed; the first flow's next one has them).
      const other = net.serverIp4[2]!;
      expect((await burst(other, 1)).sent).toBe(1);
      const otherDeadline = Date.now() + 5000;
      while (!others.some((e) => e.dst === other) && Date.now() < otherDeadline) await sleep(25);
      expect(others.filter((e) => e.dst === other)).toMatchObject([{ verdict: "blocked", suppressed: 0 }]);

      // Past the window: the next identical packet is reported, with every folded one counted.
      await sleep(Math.max(0, 10_500 - (Date.now() - seen[0]!.timeMs)));
      expect((await burst(dst, 1)).sent).toBe(1);
      const deadline = Date.now() + 5000;
      while (seen.length < 2 && Date.now() < deadline) await sleep(25);
      expect(seen).toHaveLength(2);
      expect(seen[1]!.suppressed).toBe(BURST - 1);
      expect(seen[1]!.timeMs - seen[0]!.timeMs).toBeGreaterThanOrEqual(10_000);
      expect((await filter.counters([id])).get(id)!.eventsLost).toBe(0n);
    } finally {
      reading = false;
      await it.return?.();
      await reader.catch(() => undefined);
      await filter.detach(id).catch(() => undefined);
    }
  }, 60_000);
});
