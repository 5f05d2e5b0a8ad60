import { describe, expect, it } from "vitest";
import { parseCidr } from "@netfence/proto/parse";
import { planLearned } from "../../../daemon/src/plan/learned-plan.js";
import { PolicyState } from "../../../daemon/src/policy/policy-state.js";
import { LearnedInserter } from "../../../daemon/src/dns/learned-inserter.js";
import type { LearnedAddressSink } from "../../../daemon/src/dns/learned-sink.js";
import type { AttachmentPolicy } from "../../../daemon/src/policy/policy.js";

// How long the kernel really holds a DNS-learned address (what the answer cache and the
// inserter's dedupe rely on): an address another name already holds long enough is not
// rewritten, so it keeps the kernel's earlier deadline, and that is what is reported.

const T0 = 1_700_000_000_000;
const X = parseCidr("192.0.2.10");
const base: AttachmentPolicy = { mode: "allowlist", audit: false, allowCidrs: [], denyCidrs: [], dns: { mode: "allowlist", allowDomains: [], denyDomains: [], upstreams: [] } };
const limits = { learnedQuota: Infinity, guard: null };

describe("planLearned heldUntilMs", () => {
  it("a new address: the answer's deadline; one another name holds long enough: the kernel's (earlier) deadline", () => {
    const st = new PolicyState(base);
    const first = planLearned(st, [{ name: "a.test", addresses: [X], ttlSeconds: 300 }], T0, limits);
    first.commit();
    expect(first.upserts).toHaveLength(1);
    expect(first.heldUntilMs.get("a.test")).toBe(T0 + 300_000);
    const later = T0 + 100_000;
    const second = planLearned(st, [{ name: "b.test", addresses: [X], ttlSeconds: 300 }], later, limits);
    second.commit();
    expect(second.upserts).toHaveLength(0); // 200 s left ≥ half of 300 s: not rewritten
    expect(second.heldUntilMs.get("b.test")).toBe(T0 + 300_000); // not later + 300 s
  });

  it("an address a permanent /32 CIDR rule allows: nothing written, held for the answer's TTL (the rule may go, the record stays)", () => {
    const st = new PolicyState({ ...base, allowCidrs: [{ cidr: parseCidr("192.0.2.10/32"), expiresAtMs: null }] });
    const plan = planLearned(st, [{ name: "c.test", addresses: [X], ttlSeconds: 60 }], T0, limits);
    plan.commit();
    expect(plan.upserts).toHaveLength(0);
    expect(plan.heldUntilMs.get("c.test")).toBe(T0 + 60_000);
  });
});

describe("LearnedInserter.heldUntil", () => {
  it("never beyond the deadline the sink reports, and 0 for an address it does not know to be held", async () => {
    let now = T0;
    const sink: LearnedAddressSink = { epoch: () => 1, write: async () => ({ refused: [], heldUntilMs: T0 + 100_000 }) };
    const inserter = new LearnedInserter("att", sink, 300, () => now);
    await inserter.ensure("b.test", [X], 300);
    expect(inserter.heldUntil("b.test", [X])).toBe(T0 + 100_000);
    expect(inserter.heldUntil("other.test", [X])).toBe(0);
    // 100 s held < half of 300 s: the next answer writes again instead of trusting the memory.
    now += 1000;
    expect(inserter.ensure("b.test", [X], 300)).not.toBeNull();
  });
});

describe("the learned epoch", () => {
  it("moves when a record is closed before its deadline, not when its deadline passed", async () => {
    const { LearnedAddresses } = await import("../../../daemon/src/policy/learned-addresses.js");
    const l = new LearnedAddresses();
    l.add("a.test", X, T0 + 1000);
    l.add("b.test", X, T0 + 5000);
    const e0 = l.epoch;
    l.remove("a.test", "192.0.2.10/32", true);
    expect(l.epoch).toBe(e0);
    l.remove("b.test", "192.0.2.10/32");
    expect(l.epoch).not.toBe(e0);
  });
});
