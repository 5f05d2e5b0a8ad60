import { describe, expect, it } from "vitest";
import { parseCidr } from "../../../daemon/src/policy/cidr.js";
import { parseCidrFast } from "../../../daemon/src/control-plane/parse-cidr-fast.js";

function outcome(fn: () => unknown): unknown {
  try {
    const c = fn() as { family: number; addr: Uint8Array; prefixLen: number };
    return { family: c.family, addr: Array.from(c.addr), prefixLen: c.prefixLen };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

describe("parseCidrFast", () => {
  it("agrees with parseCidr on values and errors", () => {
    const octets = ["0", "1", "9", "10", "99", "127", "128", "200", "254", "255", "256", "300", "999", "01", "00", "010", "0x1", "", "1000"];
    const prefixes = [undefined, "0", "1", "7", "8", "15", "16", "23", "24", "25", "31", "32", "33", "40", "024", "", "x", "1000"];
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
    const inputs: string[] = ["10.0.0.0/8", "1.2.3", "1.2.3.4.5", " 10.0.0.1/24 ", "::/0", "2001:db8::1/64", "::ffff:1.2.3.4", "1.2.3.4/", "/24", "a.b.c.d"];
    for (let i = 0; i < 20_000; i++) {
      const q = [0, 1, 2, 3].map(() => (rnd(4) === 0 ? octets[rnd(octets.length)]! : String(rnd(256))));
      const p = rnd(3) === 0 ? prefixes[rnd(prefixes.length)] : String(rnd(33));
      inputs.push(q.join(".") + (p === undefined ? "" : `/${p}`));
    }
    for (const text of inputs) expect(outcome(() => parseCidrFast(text)), text).toEqual(outcome(() => parseCidr(text)));
  });

  it("clears host bits", () => {
    expect(Array.from(parseCidrFast("10.1.2.3/12").addr)).toEqual([10, 0, 0, 0]);
    expect(Array.from(parseCidrFast("255.255.255.255/0").addr)).toEqual([0, 0, 0, 0]);
    expect(Array.from(parseCidrFast("192.168.77.129/25").addr)).toEqual([192, 168, 77, 128]);
  });
});
