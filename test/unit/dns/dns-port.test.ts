import { afterEach, describe, expect, it } from "vitest";
import dgram from "node:dgram";
import net from "node:net";
import { bindDnsSockets, bindFirstFree, closeSockets, portHolder, type DnsSockets } from "../../../daemon/src/dns/dns-port.js";

// DNS ports allocated by binding (issue 10 item 9): a port held by another process is skipped and
// named, not a reason for every later attach to fail.

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function squatUdp(port: number): Promise<void> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(port, "127.0.0.1", () => r()));
  cleanups.push(() => new Promise((r) => s.close(() => r())));
}

async function squatTcp(port: number): Promise<void> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(port, "127.0.0.1", () => r()));
  cleanups.push(() => new Promise((r) => s.close(() => r())));
}

async function freeBase(): Promise<number> {
  // Three consecutive free ports (UDP and TCP) from an ephemeral one.
  for (let i = 0; i < 50; i++) {
    const s = await bindDnsSockets("127.0.0.1", 0);
    await closeSockets(s);
    const base = s.port;
    if (base > 65000) continue;
    try {
      const held: DnsSockets[] = [];
      for (let p = base; p < base + 3; p++) held.push(await bindDnsSockets("127.0.0.1", p));
      for (const h of held) await closeSockets(h);
      return base;
    } catch {
      continue;
    }
  }
  throw new Error("no three free ports");
}

describe("allocation by binding", () => {
  it("skips ports held over UDP or TCP by others, names the holder, and hands the bound port over", async () => {
    const base = await freeBase();
    await squatUdp(base);
    await squatTcp(base + 1);
    const { held, taken } = await bindFirstFree("127.0.0.1", [base, base + 1, base + 2]);
    cleanups.push(() => held.release());
    expect(held.port).toBe(base + 2);
    expect(taken.map((t) => t.port)).toEqual([base, base + 1]);
    expect(taken[0]!.holder).toBe(`uid ${process.getuid!()} (udp)`);
    expect(taken[1]!.holder).toBe(`uid ${process.getuid!()} (tcp)`);
    // While held, nobody else can bind it.
    await expect(bindDnsSockets("127.0.0.1", base + 2)).rejects.toMatchObject({ code: "ALREADY_EXISTS" });
    const sockets = held.take();
    expect(() => held.take()).toThrow(/already handed over/);
    await held.release(); // a no-op after the hand-over
    expect(sockets.udp.address().port).toBe(base + 2);
    await closeSockets(sockets);
  });

  it("RESOURCE_EXHAUSTED naming the ports others hold when none is free", async () => {
    const base = await freeBase();
    await squatUdp(base);
    await squatUdp(base + 1);
    await expect(bindFirstFree("127.0.0.1", [base, base + 1])).rejects.toMatchObject({
      code: "RESOURCE_EXHAUSTED",
      message: expect.stringContaining(`2 held by other processes: ${base} (uid `),
    });
    expect(portHolder("127.0.0.1", base)).toMatch(/^uid \d+ \(udp\)$/);
  });
});
