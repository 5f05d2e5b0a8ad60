import { describe, expect, it } from "vitest";
import { LearnedAddresses } from "../../../daemon/src/policy/learned-addresses.js";
import { learnedFromStored, packLearned } from "../../../daemon/src/attachments/learned-store.js";
import { formatCidr, parseCidr } from "@netfence/proto/parse";

// The compact persisted form of DNS-learned addresses (issue 10: not one JSON object per
// address) and reading the old form.

function sample(): LearnedAddresses {
  const l = new LearnedAddresses();
  l.add("a.test", parseCidr("192.0.2.1"), 1_700_000_000_123);
  l.add("a.test", parseCidr("2001:db8::1"), 1_700_000_000_456);
  l.add("b.test", parseCidr("192.0.2.1"), 1_800_000_000_000);
  l.add("b.test", parseCidr("fe80::1:2"), 1_700_000_999_999);
  l.add("c.test", parseCidr("10.255.0.7"), 1_700_086_400_000);
  return l;
}

const triples = (l: LearnedAddresses) =>
  [...l.keyed()].map((x) => `${x.name} ${x.key} ${x.expiresAtMs}`).sort();

describe("learned-address store format", () => {
  it("round-trips names and both families; deadlines to the second, never earlier", () => {
    const l = sample();
    const packed = packLearned(l);
    expect(packed.names).toEqual(["a.test", "b.test", "c.test"]);
    expect(packed.baseMs).toBe(1_700_000_000_123);
    const back = learnedFromStored({ learned: [], learnedPacked: JSON.parse(JSON.stringify(packed)) });
    expect(back.size).toBe(l.size);
    const before = new Map([...l.keyed()].map((x) => [`${x.name} ${x.key}`, x.expiresAtMs]));
    for (const x of back.keyed()) {
      const was = before.get(`${x.name} ${x.key}`)!;
      expect(x.expiresAtMs - was).toBeGreaterThanOrEqual(0);
      expect(x.expiresAtMs - was).toBeLessThan(1000);
    }
    expect([...back.keyed()].map((x) => `${x.name} ${x.key}`).sort()).toEqual([...before.keys()].sort());
  });

  it("reads the old one-object-per-address form, alone or next to the new one", () => {
    const old = [{ name: "old.test", address: "198.51.100.1/32", expiresAtMs: 1_700_000_000_000 }];
    expect(triples(learnedFromStored({ learned: old }))).toEqual(["old.test 198.51.100.1/32 1700000000000"]);
    const both = learnedFromStored({ learned: old, learnedPacked: packLearned(sample()) });
    expect(both.size).toBe(sample().size + 1);
  });

  it("rejects a packed form whose columns do not match (a corrupt state file is not half-read)", () => {
    const packed = packLearned(sample());
    expect(() => learnedFromStored({ learned: [], learnedPacked: { ...packed, expiresAfterBase: "AAAA" } })).toThrow(/column lengths/);
    expect(() => learnedFromStored({ learned: [], learnedPacked: { ...packed, names: ["only-one"] } })).toThrow(/name index/);
  });

  it("100k learned addresses: five times smaller than the old form", () => {
    const l = new LearnedAddresses();
    for (let i = 0; i < 100_000; i++) {
      const addr = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      l.add(`name${i % 3000}.cdn.example.com`, parseCidr(addr), 1_700_000_000_000 + i * 7);
    }
    const packed = JSON.stringify(packLearned(l));
    const old = JSON.stringify([...l.keyed()].map((x) => ({ name: x.name, address: x.key, expiresAtMs: x.expiresAtMs })));
    expect(packed.length * 5).toBeLessThan(old.length);
    const back = learnedFromStored({ learned: [], learnedPacked: JSON.parse(packed) });
    expect(back.size).toBe(100_000);
    expect(formatCidr(back.forPrefix("10.1.134.159/32")[0]!.cidr)).toBe("10.1.134.159/32");
  });
});
