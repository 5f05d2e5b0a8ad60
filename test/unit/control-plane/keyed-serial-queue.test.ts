import { describe, expect, it } from "vitest";
import { KeyedSerialQueue } from "../../../daemon/src/control-plane/keyed-serial-queue.js";

describe("KeyedSerialQueue", () => {
  it("runs one key's tasks in order while other keys proceed", async () => {
    const q = new KeyedSerialQueue();
    const log: string[] = [];
    let releaseSlow!: () => void;
    const slow = new Promise<void>((r) => (releaseSlow = r));
    q.run("a", async () => {
      await slow;
      log.push("a1");
    });
    q.run("a", async () => void log.push("a2"));
    let bDone!: () => void;
    const b = new Promise<void>((r) => (bDone = r));
    q.run("b", async () => {
      log.push("b1");
      bDone();
    });
    await b;
    await new Promise((r) => setTimeout(r, 10));
    expect(log).toEqual(["b1"]); // "a" is blocked on its first task, "b" is not
    expect(q.activeKeys).toBe(1); // "b" finished and was forgotten
    releaseSlow();
    await new Promise((r) => setTimeout(r, 10));
    expect(log).toEqual(["b1", "a1", "a2"]);
    expect(q.activeKeys).toBe(0);
  });
});
