import { describe, expect, it } from "vitest";
import { Backoff } from "../../../daemon/src/control-plane/backoff.js";

describe("Backoff", () => {
  it("doubles the ceiling up to the cap and draws full jitter below it", () => {
    let r = 0.999;
    const b = new Backoff({ baseMs: 200, capMs: 30_000, random: () => r });
    const ceilings: number[] = [];
    for (let i = 0; i < 10; i++) {
      ceilings.push(b.ceilingMs());
      const d = b.next();
      expect(d).toBeLessThan(ceilings[i]!);
      expect(d).toBeGreaterThanOrEqual(Math.floor(0.999 * ceilings[i]!));
    }
    expect(ceilings).toEqual([200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
    r = 0;
    expect(b.next()).toBe(0);
    b.reset();
    expect(b.ceilingMs()).toBe(200);
    for (let i = 0; i < 2000; i++) b.next();
    expect(b.ceilingMs()).toBe(30_000);
  });
});

describe("Backoff reset (issue 13: 20 restarts in a row must not leave the next reconnect at the cap)", () => {
  function fake(resetAfterMs?: number) {
    const clock = { t: 1_000_000 };
    const b = new Backoff({ baseMs: 200, capMs: 30_000, random: () => 0.5, now: () => clock.t, ...(resetAfterMs === undefined ? {} : { resetAfterMs }) });
    return { b, clock };
  }

  it("resets when a stream stayed open resetAfterMs (default 5 s), even without a message", () => {
    const { b, clock } = fake();
    for (let restart = 0; restart < 20; restart++) {
      // A slow control plane: the stream opens, no SyncAck yet, restarted after 6 s.
      b.opened();
      clock.t += 6000;
      expect(b.next()).toBe(100); // 0.5 · base: every outage starts from the base again
      expect(b.attempts()).toBe(1);
      clock.t += 100; // the retry that reconnects
    }
  });

  it("keeps counting for streams that end sooner than resetAfterMs without a message", () => {
    const { b, clock } = fake();
    const ceilings: number[] = [];
    for (let i = 0; i < 10; i++) {
      b.opened();
      clock.t += 4999; // e.g. a proxy holding the stream, then UNAVAILABLE: not proven serving
      ceilings.push(b.ceilingMs());
      b.next();
    }
    expect(ceilings).toEqual([200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
    // Exactly resetAfterMs is enough.
    b.opened();
    clock.t += 5000;
    b.next();
    expect(b.attempts()).toBe(1);
  });

  it("resets on a message (reset()), and failed connects (no stream) keep counting", () => {
    const { b, clock } = fake(1000);
    b.next(); b.next(); b.next(); // three refused connects: no opened()
    expect(b.ceilingMs()).toBe(1600);
    b.opened();
    clock.t += 10;
    b.reset(); // SyncAck arrived
    expect(b.ceilingMs()).toBe(200);
    clock.t += 10; // the stream ends 20 ms after it opened: the reset by the message holds
    b.next();
    expect(b.attempts()).toBe(1);
    // A stale open is forgotten once next() ran: a later refused connect does not reset.
    clock.t += 60_000;
    b.next();
    expect(b.attempts()).toBe(2);
  });
});
