import { describe, expect, it } from "vitest";
import {
  DENIES, iptablesAppendCommands, iptablesRestoreText, netfenceScoped, netfenceUnscoped, nftRulesText, nftSetText, segRules,
} from "../../../bench/segmentation/rulesets.js";

// bench/segmentation's policy: the same N rules in every engine's syntax (the kernel side is the bench's own run).
describe("bench/segmentation rule sets", () => {
  const rules = segRules(100, 1, 7400);

  it("N rules: denies first, the bench's own allows last, variants differ only in the generic rules", () => {
    expect(rules).toHaveLength(100);
    expect(rules.slice(0, DENIES).every((r) => r.action === "drop" && r.uid === 65534)).toBe(true);
    expect(rules.slice(-2)).toEqual([
      { action: "accept", uid: 1, proto: "udp", port: 7400 },
      { action: "accept", uid: 1, proto: "tcp", port: 7400 },
    ]);
    const b = segRules(100, 1, 7400, "b");
    expect(b.slice(-2)).toEqual(rules.slice(-2));
    expect(b.slice(DENIES, -2)).not.toEqual(rules.slice(DENIES, -2));
    expect(() => segRules(3, 1, 7400)).toThrow(RangeError);
  });

  it("iptables: one atomic restore with established first and default drop; the seed's loop flushes first", () => {
    const text = iptablesRestoreText(rules).split("\n");
    expect(text).toContain(":OUTPUT DROP [0:0]");
    expect(text[4]).toContain("--ctstate ESTABLISHED,RELATED -j ACCEPT");
    expect(text.filter((l) => l.includes("--uid-owner"))).toHaveLength(100);
    const cmds = iptablesAppendCommands(rules);
    expect(cmds[0]).toEqual(["-F", "OUTPUT"]);
    expect(cmds.at(-1)).toEqual(["-P", "OUTPUT", "DROP"]);
    expect(cmds).toHaveLength(103);
  });

  it("nft: one transaction replacing table inet nfseg; the set form holds every rule as an element", () => {
    const t = nftRulesText(rules);
    expect(t.startsWith("table inet nfseg {}\ndelete table inet nfseg\n")).toBe(true);
    expect(t.match(/meta skuid/g)).toHaveLength(100);
    const s = nftSetText(rules);
    expect(s.match(/127\.0\.0\.1 \. \d+ \. \d+/g)).toHaveLength(100);
    expect(s).toContain("ip daddr . meta skuid . udp dport @allow_udp accept");
  });

  it("Netfence: unscoped = same count of /32 entries (127.0.0.1 allowed); scoped = every rule on 127.0.0.1/32", () => {
    const u = netfenceUnscoped(rules);
    expect(u.entries).toHaveLength(100);
    expect(new Set(u.entries.map((e) => `${e.cidr.family}/${Buffer.from(e.cidr.addr).toString("hex")}/${e.cidr.prefixLen}`)).size).toBe(100);
    expect(u.entries.filter((e) => e.deny)).toHaveLength(DENIES);
    const s = netfenceScoped(rules);
    expect(s.entries).toHaveLength(1);
    expect(s.entries[0]!.allow || s.entries[0]!.deny).toBe(false);
    expect(s.entries[0]!.scoped).toHaveLength(100);
    expect(s.entries[0]!.scoped!.at(-1)).toMatchObject({ allow: true, scope: { protocols: [6], ports: [{ from: 7400, to: 7400 }], users: [{ id: 1, name: null }] } });
  });
});
