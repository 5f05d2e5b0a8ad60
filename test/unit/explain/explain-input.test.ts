import { describe, expect, it } from "vitest";
import { parseExplainTarget } from "../../../cli/src/explain-target.js";
import { parseExplainQuery, protocolNumber } from "../../../daemon/src/explain/explain-query.js";
import { decidingRule } from "../../../daemon/src/explain/explainer.js";
import { compileDomainRules, matchDomain } from "@netfence/proto/domain-match";
import type { DomainRule } from "@netfence/proto/parse";

// The input side of `netfenced explain`: the CLI's ADDRESS[:PORT[/PROTO]] parser, the daemon's
// validation of the RPC's fields (the one that counts for every client), and the deciding domain
// rule, checked against the contract's matcher.

describe("parseExplainTarget (CLI)", () => {
  it("accepts addresses with and without port and protocol, IPv6 in brackets", () => {
    expect(parseExplainTarget("10.0.0.1")).toEqual({ address: "10.0.0.1", port: 0, protocol: "" });
    expect(parseExplainTarget("10.0.0.1:443")).toEqual({ address: "10.0.0.1", port: 443, protocol: "" });
    expect(parseExplainTarget("10.0.0.1:53/UDP")).toEqual({ address: "10.0.0.1", port: 53, protocol: "udp" });
    expect(parseExplainTarget("2001:db8::1")).toEqual({ address: "2001:db8::1", port: 0, protocol: "" });
    expect(parseExplainTarget("[2001:db8::1]:443/tcp")).toEqual({ address: "2001:db8::1", port: 443, protocol: "tcp" });
    expect(parseExplainTarget("[fe80::1]")).toEqual({ address: "fe80::1", port: 0, protocol: "" });
  });

  it("refuses bad shapes with a message naming the problem", () => {
    expect(() => parseExplainTarget("")).toThrow(/no address/);
    expect(() => parseExplainTarget("10.0.0.1:0")).toThrow(/not a port/);
    expect(() => parseExplainTarget("10.0.0.1:65536")).toThrow(/not a port/);
    expect(() => parseExplainTarget("10.0.0.1:x")).toThrow(/not a port/);
    expect(() => parseExplainTarget("10.0.0.1:80/sctpx")).toThrow(/bad protocol/);
    expect(() => parseExplainTarget("10.0.0.0/8")).toThrow(/not a prefix/);
    expect(() => parseExplainTarget("2001:db8::/32")).toThrow(/brackets/);
    expect(() => parseExplainTarget("[2001:db8::1")).toThrow(/missing "]"/);
    expect(() => parseExplainTarget("[2001:db8::1]443")).toThrow(/expected ":PORT"/);
  });
});

describe("parseExplainQuery (daemon)", () => {
  const q = (o: Partial<Parameters<typeof parseExplainQuery>[0]>) => parseExplainQuery({ attachmentId: "nf-1", address: "", port: 0, protocol: "", domain: "", ...o });

  it("an address, with tcp as the default protocol of a port", () => {
    expect(q({ address: "10.0.0.1" }).probe).toMatchObject({ family: 4, protocol: null, port: null });
    expect(q({ address: "10.0.0.1", port: 80 }).probe).toMatchObject({ protocol: 6, port: 80 });
    expect(q({ address: "2001:db8::1", port: 53, protocol: "udp" }).probe).toMatchObject({ family: 6, protocol: 17, port: 53 });
    expect(q({ address: "2001:db8::1", protocol: "icmpv6" }).probe).toMatchObject({ protocol: 58, port: null });
    expect(q({ domain: "WWW.Example.COM." }).domain).toBe("www.example.com");
  });

  it("bad input → INVALID_ARGUMENT with a clear message", () => {
    const bad: [Partial<Parameters<typeof parseExplainQuery>[0]>, RegExp][] = [
      [{ attachmentId: "../x", address: "10.0.0.1" }, /invalid attachment id/],
      [{}, /exactly one of an address or a domain/],
      [{ address: "10.0.0.1", domain: "a.com" }, /exactly one/],
      [{ address: "10.0.0.0/8" }, /is a prefix/],
      [{ address: "10.0.0.300" }, /not an IP address/],
      [{ address: "10.0.0.1", port: 70000 }, /out of range/],
      [{ address: "10.0.0.1", protocol: "bogus" }, /unknown protocol/],
      [{ address: "10.0.0.1", port: 1, protocol: "gre" }, /unknown protocol/],
      [{ address: "10.0.0.1", port: 1, protocol: "47" }, /has no ports/],
      [{ address: "10.0.0.1", protocol: "icmpv6" }, /icmpv6 to an IPv4/],
      [{ domain: "a.com", port: 80 }, /not with --domain/],
      [{ domain: "bad..name" }, /./],
    ];
    for (const [input, msg] of bad) expect(() => q(input), JSON.stringify(input)).toThrow(msg);
    try {
      q({ address: "nope" });
    } catch (err) {
      expect(err).toMatchObject({ code: "INVALID_ARGUMENT" });
    }
    expect(protocolNumber("TCP")).toBe(6);
    expect(protocolNumber("255")).toBe(255);
    expect(() => protocolNumber("256")).toThrow();
  });
});

describe("decidingRule: the rule behind the contract's domain verdict", () => {
  const r = (domain: string, includeSubdomains = false): DomainRule => ({ domain, includeSubdomains });
  const allow = [r("example.com", true), r("api.example.com"), r("cdn.net", true), r("x.cdn.net")];
  const deny = [r("bad.example.com", true), r("x.cdn.net"), r("deep.api.example.com")];
  const names = ["example.com", "www.example.com", "api.example.com", "v1.api.example.com", "deep.api.example.com", "bad.example.com", "a.bad.example.com", "x.cdn.net", "y.x.cdn.net", "other.org", "Cdn.Net."];

  it("names the rule whose action is the verdict matchDomain gives, for every name", () => {
    const compiled = compileDomainRules({ allowDomains: allow, denyDomains: deny });
    for (const name of names) {
      const rule = decidingRule(allow, deny, name);
      expect({ name, action: rule?.action ?? "none" }).toEqual({ name, action: matchDomain(compiled, name) });
    }
    expect(decidingRule(allow, deny, "v1.api.example.com")).toEqual({ action: "allow", domain: "example.com", includeSubdomains: true });
    expect(decidingRule(allow, deny, "x.cdn.net")).toEqual({ action: "deny", domain: "x.cdn.net", includeSubdomains: false });
    expect(decidingRule(allow, deny, "y.x.cdn.net")).toEqual({ action: "allow", domain: "cdn.net", includeSubdomains: true });
  });
});
