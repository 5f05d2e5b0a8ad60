import ipaddr from "ipaddr.js";
import { describe, expect, it } from "vitest";
import { formatAddr, formatCidr, parseCidr, parseCidrGeneral } from "@netfence/proto/parse";

function outcome(fn: () => unknown): unknown {
  try {
    const c = fn() as { family: number; addr: Uint8Array; prefixLen: number };
    return { family: c.family, addr: Array.from(c.addr), prefixLen: c.prefixLen };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

let seed = 7;
const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);

describe("parseCidr", () => {
  it("the dotted-quad fast path agrees with the general parser on values and errors", () => {
    const octets = ["0", "1", "9", "10", "99", "127", "128", "200", "254", "255", "256", "300", "999", "01", "00", "010", "0x1", "", "1000"];
    const prefixes = [undefined, "0", "1", "7", "8", "15", "16", "23", "24", "25", "31", "32", "33", "40", "024", "", "x", "1000"];
    const inputs: string[] = ["10.0.0.0/8", "1.2.3", "1.2.3.4.5", " 10.0.0.1/24 ", "::/0", "2001:db8::1/64", "::ffff:1.2.3.4", "1.2.3.4/", "/24", "a.b.c.d"];
    for (let i = 0; i < 20_000; i++) {
      const q = [0, 1, 2, 3].map(() => (rnd(4) === 0 ? octets[rnd(octets.length)]! : String(rnd(256))));
      const p = rnd(3) === 0 ? prefixes[rnd(prefixes.length)] : String(rnd(33));
      inputs.push(q.join(".") + (p === undefined ? "" : `/${p}`));
    }
    for (const text of inputs) expect(outcome(() => parseCidr(text)), text).toEqual(outcome(() => parseCidrGeneral(text)));
  });

  it("clears host bits", () => {
    expect(Array.from(parseCidr("10.1.2.3/12").addr)).toEqual([10, 0, 0, 0]);
    expect(Array.from(parseCidr("255.255.255.255/0").addr)).toEqual([0, 0, 0, 0]);
    expect(formatCidr(parseCidr("2001:db8:ffff::1/33"))).toBe("2001:db8:8000::/33");
  });
});

describe("formatAddr", () => {
  it("produces exactly ipaddr.js's canonical text (RFC 5952) for 20k addresses", () => {
    for (let i = 0; i < 20_000; i++) {
      const fam = rnd(2) === 0 ? 4 : 6;
      const bytes = Array.from({ length: fam === 4 ? 4 : 16 }, () => (rnd(3) === 0 ? 0 : rnd(256)));
      // zero runs of various lengths and places
      if (fam === 6 && rnd(2) === 0) {
        const start = rnd(8) * 2;
        const len = rnd(8 - start / 2 + 1) * 2;
        bytes.fill(0, start, start + len);
      }
      expect(formatAddr(fam, Uint8Array.from(bytes))).toBe(ipaddr.fromByteArray(bytes).toString());
    }
  });
});
