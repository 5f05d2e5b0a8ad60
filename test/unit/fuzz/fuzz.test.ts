import { afterAll, describe, it } from "vitest";
import fc from "fast-check";
import { dnsBytes, handlerHarness, handlerInput, wireProperty } from "../../../bench/fuzz/dns-properties.js";
import { commandBytes, commandBytesProperty, commandProperty, controlCommand } from "../../../bench/fuzz/command-properties.js";

// A short, seeded run of the fuzz properties (the benchmark runs ≥ 1M inputs each: bench/fuzz):
// the DNS wire parser, the DNS server's whole answer() pipeline with a scripted upstream, and the
// control-plane command validator. Any crash or broken invariant fails with a shrunk counterexample.

const RUNS = 3000;
const SEED = 424242;

describe("fuzz (seeded, a few thousand inputs each)", () => {
  it("DNS wire parser: never throws, invariants hold", () => {
    fc.assert(fc.property(dnsBytes, (b) => void wireProperty(b)), { numRuns: RUNS, seed: SEED });
  });

  const harness = handlerHarness();
  afterAll(() => harness.stop());
  it("DNS answer() end to end: never throws, reply id matches, refused addresses never in the reply", async () => {
    await fc.assert(fc.asyncProperty(handlerInput, (i) => harness.run(i.query, i.reply, i.mode, i.refuseSpecial)), { numRuns: RUNS, seed: SEED + 1 });
  });

  it("command validator: a valid typed command or INVALID_ARGUMENT, from structured messages and from wire bytes", () => {
    fc.assert(fc.property(controlCommand, (c) => void commandProperty(c)), { numRuns: RUNS, seed: SEED + 2 });
    fc.assert(fc.property(commandBytes, (b) => void commandBytesProperty(b)), { numRuns: RUNS, seed: SEED + 3 });
  });
});
