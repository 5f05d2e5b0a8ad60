import { describe, expect, it } from "vitest";
import { normalizeDomain } from "@netfence/proto/parse";
import { isNetfenceError } from "@netfence/proto/errors";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isNetfenceError(err) ? err.code : "not-a-netfence-error";
  }
  return undefined;
}

describe("normalizeDomain", () => {
  it("lower-cases and strips one trailing dot", () => {
    expect(normalizeDomain("WWW.Example.COM.")).toBe("www.example.com");
    expect(normalizeDomain("example.com")).toBe("example.com");
    expect(normalizeDomain("_sip._tcp.Example.com")).toBe("_sip._tcp.example.com");
    expect(normalizeDomain("localhost")).toBe("localhost");
  });

  it("accepts a 253-character name and 63-character labels", () => {
    const label63 = "a".repeat(63);
    const name = [label63, label63, label63, "b".repeat(61)].join(".");
    expect(name.length).toBe(253);
    expect(normalizeDomain(name)).toBe(name);
    expect(normalizeDomain(name + ".")).toBe(name);
  });

  it.each([
    ["", "empty"],
    [".", "only a dot"],
    ["a..b", "empty label"],
    [".a.b", "leading dot"],
    ["a.b..", "two trailing dots"],
    ["a".repeat(64) + ".com", "64-character label"],
    [["a".repeat(63), "a".repeat(63), "a".repeat(63), "a".repeat(62)].join("."), "254 characters"],
    ["exa mple.com", "space"],
    ["exämple.com", "non-ASCII"],
    ["*.example.com", "wildcard"],
    ["example.com/path", "slash"],
  ])("rejects %j (%s) with INVALID_ARGUMENT", (input) => {
    expect(codeOf(() => normalizeDomain(input))).toBe("INVALID_ARGUMENT");
  });
});
