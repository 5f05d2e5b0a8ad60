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
