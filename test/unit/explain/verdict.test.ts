import { describe, expect, it } from "vitest";
import { parseCidr } from "@netfence/proto/parse";
import type { KernelLookup, KernelMatch } from "../../../daemon/src/datapath/lookup-wire.js";
import { GUARD } from "../../../daemon/src/datapath/wire-format.js";
import { decide, IPPROTO, localClosed, type ExplainProbe } from "../../../daemon/src/explain/verdict.js";

// The order of decisions of nf_decide() (bpf/include/policy.h), applied to kernel answers built by
// hand: every step c..k, audit, and what an open question (no port) says. The agreement with real
// packets is proven by test/kernel/datapath/lookup.test.ts and test/e2e/explain.test.ts.

const base: KernelLookup = {
  mode: "allowlist",
  audit: false,
  guards: 0,
  dnsIp4: "10.9.0.1",
  dnsIp6: "fd00::1",
  dnsPort: 10053,
  dnsPortMin: 10000,
  dnsPortMax: 10999,
  protectedCount: 0,
  protectedDenyCount: 0,
  match: null,
  expiredSkipped: 0,
  protectedAllow: null,
  protectedDeny: null,
};
const entry = (cidr: string, e: Partial<KernelMatch> = {}): KernelMatch => ({
  cidr, prefixLen: parseCidr(cidr).prefixLen, allow: true, deny: false, ruleId: 0, expiresAtMs: null, table: "lpm", ...e,
});
const at = (addr: string, protocol: number | null = null, port: number | null = null): ExplainProbe => {
  const c = parseCidr(addr);
  return { family: c.family, addr: c.addr, protocol, port };
};
const short = (k: Partial<KernelLookup>, p: ExplainProbe) => {
  const v = decide({ ...base, ...k }, p);
  return [v.verdict, v.reason, v.step];
};

describe("decide(): nf_decide's order over the kernel's answers", () => {
  it("c: an IPv4-mapped IPv6 destination is malformed in every mode", () => {
    expect(short({ mode: "disabled" }, at("::ffff:10.0.0.1"))).toEqual(["blocked", "malformed", "c"]);
  });

  it("d/e: the DNS address — own port passes, other ports of the range drop, others are policy; an open port says so", () => {
    expect(short({ mode: "block-all" }, at("10.9.0.1", IPPROTO.udp, 10053))).toEqual(["allowed", "always-allowed", "e"]);
    expect(short({ mode: "block-all" }, at("fd00::1", IPPROTO.tcp, 10053))).toEqual(["allowed", "always-allowed", "e"]);
    expect(short({ mode: "disabled" }, at("10.9.0.1", IPPROTO.udp, 10054))).toEqual(["blocked", "other-tenant-dns", "d"]);
    expect(short({ mode: "denylist" }, at("10.9.0.1", IPPROTO.tcp, 80))).toEqual(["allowed", "denylist-default", "k"]);
    expect(short({}, at("10.9.0.1", IPPROTO.icmp, 8))).toEqual(["blocked", "not-in-allowlist", "k"]);
    const open = decide(base, at("10.9.0.1"));
    expect(open.notes.join()).toMatch(/port 10053 always passes; ports 10000-10999/);
  });

  it("e: ND to a link-scope address passes; router advertisements are dropped unless the workload is a router; DHCP where enabled", () => {
    expect(short({ mode: "block-all" }, at("ff02::1:ff00:1", IPPROTO.icmpv6, 135))).toEqual(["allowed", "always-allowed", "e"]);
    expect(short({ mode: "disabled" }, at("ff02::1", IPPROTO.icmpv6, 134))).toEqual(["blocked", "router-message", "e"]);
    expect(short({ mode: "block-all", guards: GUARD.ROUTER }, at("ff02::1", IPPROTO.icmpv6, 134))).toEqual(["allowed", "always-allowed", "e"]);
    expect(short({ guards: GUARD.DHCP }, at("255.255.255.255", IPPROTO.udp, 67))).toEqual(["allowed", "always-allowed", "e"]);
    expect(short({}, at("255.255.255.255", IPPROTO.udp, 67))).toEqual(["blocked", "not-in-allowlist", "k"]);
  });

  it("f/g: protected beats block-all and a deny; protected-deny beats an allow; only when the set is non-empty and the scope fits", () => {
    const prot = { prefixLen: 24, protocol: IPPROTO.tcp, port: 22 };
    const any = { prefixLen: 8, protocol: 0, port: 0 };
    expect(short({ mode: "block-all", protectedCount: 1, protectedAllow: prot }, at("10.1.1.1", IPPROTO.tcp, 22))).toEqual(["allowed", "protected", "f"]);
    expect(short({ mode: "block-all", protectedCount: 1, protectedAllow: prot }, at("10.1.1.1", IPPROTO.tcp, 23))).toEqual(["blocked", "mode:block-all", "h"]);
    expect(short({ mode: "block-all", protectedCount: 0, protectedAllow: prot }, at("10.1.1.1", IPPROTO.tcp, 22))).toEqual(["blocked", "mode:block-all", "h"]);
    const noPort = decide({ ...base, mode: "block-all", protectedCount: 1, protectedAllow: prot }, at("10.1.1.1"));
    expect(noPort.notes.join()).toMatch(/only for tcp port 22/);
    expect(short({ mode: "disabled", audit: true, protectedDenyCount: 1, protectedDeny: any, match: entry("10.1.1.1/32") }, at("10.1.1.1"))).toEqual(["blocked", "protected-deny", "g"]);
  });

  it("h: disabled passes; block-all blocks (audited in audit mode)", () => {
    expect(short({ mode: "disabled", match: entry("10.0.0.0/8", { allow: false, deny: true }) }, at("10.1.1.1"))).toEqual(["allowed", "mode:disabled", "h"]);
    expect(short({ mode: "block-all", match: entry("10.0.0.0/8") }, at("10.1.1.1"))).toEqual(["blocked", "mode:block-all", "h"]);
    expect(short({ mode: "block-all", audit: true }, at("10.1.1.1"))).toEqual(["audited", "mode:block-all", "h"]);
  });

  it("i: the kernel's match decides — deny (also with allow at the same prefix), else allow", () => {
    expect(short({ mode: "denylist", match: entry("10.0.0.0/8", { deny: true }) }, at("10.1.1.1"))).toEqual(["blocked", "deny-cidr", "i"]);
    expect(short({ match: entry("10.1.1.1/32", { table: "small-exact" }) }, at("10.1.1.1"))).toEqual(["allowed", "allow-cidr", "i"]);
    expect(short({ audit: true, match: entry("10.0.0.0/8", { allow: false, deny: true }) }, at("10.1.1.1"))).toEqual(["audited", "deny-cidr", "i"]);
  });

  it("j: loopback and link-local stay closed unless an allow inside the range matched or the attachment opens them", () => {
    expect(short({ mode: "denylist" }, at("127.0.0.1"))).toEqual(["blocked", "local-closed", "j"]);
    expect(short({ mode: "denylist", match: entry("0.0.0.0/0") }, at("169.254.169.254"))).toEqual(["blocked", "local-closed", "j"]);
    expect(short({ match: entry("127.0.0.0/8") }, at("127.0.0.1"))).toEqual(["allowed", "allow-cidr", "i"]);
    expect(short({ mode: "denylist", guards: GUARD.OPEN_LOOPBACK }, at("127.0.0.1"))).toEqual(["allowed", "denylist-default", "k"]);
    expect(short({ mode: "denylist" }, at("::1"))).toEqual(["blocked", "local-closed", "j"]);
    expect(short({ mode: "denylist" }, at("fe80::1"))).toEqual(["blocked", "local-closed", "j"]);
    expect(localClosed(at("169.254.1.1"), GUARD.OPEN_LINK_LOCAL)).toBe(0);
    const wide = decide({ ...base, match: entry("0.0.0.0/0") }, at("127.0.0.1"));
    expect(wide.notes.join()).toMatch(/wider than the closed local range/);
  });

  it("k: the mode's default", () => {
    expect(short({ mode: "denylist" }, at("192.0.2.1"))).toEqual(["allowed", "denylist-default", "k"]);
    expect(short({}, at("192.0.2.1"))).toEqual(["blocked", "not-in-allowlist", "k"]);
    expect(short({ audit: true }, at("2001:db8::1"))).toEqual(["audited", "not-in-allowlist", "k"]);
  });
});
