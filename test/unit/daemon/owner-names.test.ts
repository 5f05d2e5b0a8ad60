import { describe, expect, it } from "vitest";
import { OwnerNames } from "../../../daemon/src/policy/principals.js";

/** uid → name for events (issue 15): real NSS (getent), bounded in entries and in lookups per second. */
describe("OwnerNames", () => {
  it("names a uid through NSS, caches it, and caches a uid without a user as null", async () => {
    const names = new OwnerNames();
    expect(names.cached(0)).toBeUndefined();
    expect(await names.lookup(0)).toBe("root");
    expect(names.cached(0)).toBe("root");
    expect(await names.lookup(4_000_000_123)).toBeNull();
    expect(names.cached(4_000_000_123)).toBeNull();
  });

  it("keeps at most maxEntries names, the oldest going first", async () => {
    const names = new OwnerNames(2, 100);
    await names.lookup(0);
    await names.lookup(1);
    await names.lookup(65534);
    expect(names.cached(0)).toBeUndefined();
    expect(names.cached(1)).not.toBeUndefined();
    expect(names.cached(65534)).toBe("nobody");
  });

  it("looks up at most lookupsPerSecond new uids a second: the rest go out unnamed and uncached, and are named later", async () => {
    let now = 10_000;
    const names = new OwnerNames(100, 1, () => now);
    expect(await names.lookup(0)).toBe("root");
    expect(await names.lookup(65534)).toBeNull(); // over the budget: no getent, not cached
    expect(names.cached(65534)).toBeUndefined();
    expect(await names.lookup(0)).toBe("root"); // cached names cost no budget
    now += 1000;
    expect(await names.lookup(65534)).toBe("nobody");
  });
});
