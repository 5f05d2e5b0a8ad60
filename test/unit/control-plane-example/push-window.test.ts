import { describe, expect, it } from "vitest";
import { runWindowed } from "../../../control-plane-example/src/policy-file/push-window.js";

describe("runWindowed (netfence-cp's per-daemon push window)", () => {
  it("runs every job, at most `limit` at once, results in job order", async () => {
    let inFlight = 0;
    let most = 0;
    const started: number[] = [];
    const jobs = Array.from({ length: 50 }, (_, i) => async () => {
      started.push(i);
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, (i * 7) % 5));
      inFlight--;
      return i * 2;
    });
    const out = await runWindowed(jobs, 8);
    expect(out).toEqual(Array.from({ length: 50 }, (_, i) => i * 2));
    expect(most).toBe(8);
    expect(started).toEqual(Array.from({ length: 50 }, (_, i) => i)); // sent in order
  });

  it("a job is started only when one before it finished (its timeout covers only the window ahead of it)", async () => {
    let finished = 0;
    const finishedAtStart: number[] = [];
    const jobs = Array.from({ length: 6 }, (_, i) => async () => {
      finishedAtStart.push(finished);
      await new Promise((r) => setTimeout(r, 6 - i));
      finished++;
    });
    await runWindowed(jobs, 2);
    finishedAtStart.forEach((f, i) => expect(f).toBeGreaterThanOrEqual(Math.max(0, i - 1)));
    expect(await runWindowed([], 4)).toEqual([]);
  });
});
