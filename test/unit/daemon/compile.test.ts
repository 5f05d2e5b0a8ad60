import { describe, expect, it } from "vitest";
import { compileEntries, compilePolicy, compilePrefix } from "../../../daemon/src/policy/compile.js";
import { formatCidr, parseCidr } from "@netfence/proto/parse";
import { EMPTY_DNS_POLICY } from "../../../daemon/src/policy/policy.js";

const rule = (c: string, expiresAtMs: number | null = null) => ({ cidr: parseCidr(c), expiresAtMs });
const NOW = 1_000_000;

describe("compileEntries", () => {
  it("merges allow and deny of one prefix into one entry", () => {
    const entries = compileEntries({ allowCidrs: [rule("10.0.0.0/8")], denyCidrs: [rule("10.0.0.0/8"), rule("192.168.1.0/24")] }, [], NOW);
    expect(entries).toHaveLength(2);
    const ten = entries.find((e) => formatCidr(e.cidr) === "10.0.0.0/8")!;
    expect(ten).toMatchObject({ allow: true, deny: true, expiresAtMs: null });
    const lan = entries.find((e) => formatCidr(e.cidr) === "192.168.1.0/24")!;
    expect(lan).toMatchObject({ allow: false, deny: true });
  });

  it("canonicalises prefixes so host bits do not create duplicates", () => {
    const entries = compileEntries({ allowCidrs: [rule("10.1.2.3/8"), rule("10.0.0.0/8", NOW + 5)], denyCidrs: [] }, [], NOW);
    expect(entries).toHaveLength(1);
    expect(entries[0]!.expiresAtMs).toBeNull();
  });

  it("takes the latest deadline, and drops expired rules and learned addresses", () => {
    const entries = compileEntries(
      { allowCidrs: [rule("1.1.1.1", NOW + 10), rule("2.2.2.2", NOW - 1)], denyCidrs: [] },
      [
        { cidr: parseCidr("1.1.1.1"), expiresAtMs: NOW + 50 },
        { cidr: parseCidr("3.3.3.3"), expiresAtMs: NOW },
        { cidr: parseCidr("2001:db8::5"), expiresAtMs: NOW + 7 },
      ],
      NOW,
    );
    expect(entries.map((e) => [formatCidr(e.cidr), e.expiresAtMs])).toEqual([
      ["1.1.1.1/32", NOW + 50],
      ["2001:db8::5/128", NOW + 7],
    ]);
  });

  it("compilePrefix recomputes one prefix from what remains", () => {
    const pol = { allowCidrs: [rule("9.9.9.9/32", NOW + 100)], denyCidrs: [rule("8.0.0.0/8")] };
    const learned = [{ cidr: parseCidr("9.9.9.9"), expiresAtMs: NOW + 500 }];
    expect(compilePrefix(pol, learned, parseCidr("9.9.9.9"), NOW)).toMatchObject({ allow: true, deny: false, expiresAtMs: NOW + 500 });
    expect(compilePrefix(pol, [], parseCidr("9.9.9.9"), NOW + 200)).toBeNull();
    expect(compilePrefix(pol, [], parseCidr("7.0.0.0/8"), NOW)).toBeNull();
  });

  it("compilePolicy carries mode and audit", () => {
    const p = compilePolicy({ mode: "denylist", audit: true, allowCidrs: [], denyCidrs: [rule("::/0")], dns: EMPTY_DNS_POLICY }, [], NOW);
    expect(p.mode).toBe("denylist");
    expect(p.audit).toBe(true);
    expect(p.entries).toHaveLength(1);
  });
});
