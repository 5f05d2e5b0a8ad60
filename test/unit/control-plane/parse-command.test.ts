import { describe, expect, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import {
  ControlCommandSchema,
  SetModeSchema,
  SubscribedAckSchema,
  type ControlCommand,
} from "@netfence/proto/control";
import { DnsMode, PolicyMode } from "@netfence/proto/types";
import { parseCommand, parseSubscribedAck, parseUpstream } from "../../../daemon/src/control-plane/parse-command.js";
import { formatCidr } from "@netfence/proto/parse";
import { isNetfenceError } from "@netfence/proto/errors";

const NOW = 1_700_000_000_000;

function cmd(command: ControlCommand["command"], extra: { id?: string; commandId?: string } = {}): ControlCommand {
  return create(ControlCommandSchema, { id: extra.id ?? "att-1", commandId: extra.commandId ?? "", command });
}

function rejects(c: ControlCommand, pattern: RegExp, strict = false): void {
  let caught: unknown;
  try {
    parseCommand(c, NOW, { strict });
  } catch (err) {
    caught = err;
  }
  expect(isNetfenceError(caught)).toBe(true);
  if (isNetfenceError(caught)) {
    expect(caught.code).toBe("INVALID_ARGUMENT");
    expect(caught.message).toMatch(pattern);
  }
}

describe("parseCommand", () => {
  it("maps every policy mode", () => {
    const modes: Array<[PolicyMode, string]> = [
      [PolicyMode.DISABLED, "disabled"],
      [PolicyMode.ALLOWLIST, "allowlist"],
      [PolicyMode.DENYLIST, "denylist"],
      [PolicyMode.BLOCK_ALL, "block-all"],
    ];
    for (const [mode, name] of modes) {
      const parsed = parseCommand(cmd({ case: "setMode", value: { $typeName: "netfence.v1.SetMode", mode } }), NOW);
      expect(parsed.command).toEqual({ kind: "set-mode", mode: name, audit: null });
    }
  });

  it("keeps command_id when set and null when not", () => {
    const c = { case: "setMode" as const, value: { $typeName: "netfence.v1.SetMode" as const, mode: PolicyMode.ALLOWLIST } };
    expect(parseCommand(cmd(c, { commandId: "c-7" }), NOW).commandId).toBe("c-7");
    expect(parseCommand(cmd(c), NOW).commandId).toBeNull();
    expect(parseCommand(cmd(c), NOW).attachmentId).toBe("att-1");
  });

  it("parses allow/deny CIDR with TTL into a deadline", () => {
    const c = create(ControlCommandSchema, {
      id: "a",
      command: { case: "allowCidr", value: { cidr: "10.1.2.3/16", ttl: create(DurationSchema, { seconds: 30n, nanos: 500_000_000 }) } },
    });
    const parsed = parseCommand(c, NOW);
    expect(parsed.command.kind).toBe("allow-cidr");
    if (parsed.command.kind === "allow-cidr") {
      expect(formatCidr(parsed.command.rule.cidr)).toBe("10.1.0.0/16");
      expect(parsed.command.rule.expiresAtMs).toBe(NOW + 30_500);
    }
    const deny = parseCommand(create(ControlCommandSchema, { id: "a", command: { case: "denyCidr", value: { cidr: "2001:db8::1/32" } } }), NOW);
    expect(deny.command).toMatchObject({ kind: "deny-cidr", rule: { expiresAtMs: null } });
    const zeroTtl = parseCommand(
      create(ControlCommandSchema, { id: "a", command: { case: "denyCidr", value: { cidr: "1.2.3.4", ttl: create(DurationSchema, {}) } } }),
      NOW,
    );
    expect(zeroTtl.command).toMatchObject({ kind: "deny-cidr", rule: { expiresAtMs: null } });
  });

  it("rejects bad CIDRs naming the field", () => {
    rejects(create(ControlCommandSchema, { id: "a", command: { case: "allowCidr", value: { cidr: "10.0.0.0/33" } } }), /allow_cidr\.cidr: .*exceeds 32/);
    rejects(create(ControlCommandSchema, { id: "a", command: { case: "denyCidr", value: { cidr: "::/129" } } }), /deny_cidr\.cidr/);
    rejects(create(ControlCommandSchema, { id: "a", command: { case: "removeCidr", value: "garbage" } }), /remove_cidr: .*not an IP/);
    rejects(create(ControlCommandSchema, { id: "a", command: { case: "removeCidr", value: "" } }), /remove_cidr/);
  });

  it("rejects negative, malformed and huge TTLs", () => {
    const withTtl = (seconds: bigint, nanos = 0) =>
      create(ControlCommandSchema, { id: "a", command: { case: "allowCidr", value: { cidr: "1.1.1.1", ttl: create(DurationSchema, { seconds, nanos }) } } });
    rejects(withTtl(-5n), /negative/);
    rejects(withTtl(0n, -1), /negative/);
    rejects(withTtl(1n, -1), /different signs/);
    rejects(withTtl(1n, 2_000_000_000), /out of range/);
    rejects(withTtl(10n ** 12n), /exceeds the maximum/);
  });

  it("treats UNSPECIFIED modes as DISABLED (Go original), rejects them when strict; unknown modes always rejected", () => {
    const unspecified = cmd({ case: "setMode", value: { $typeName: "netfence.v1.SetMode", mode: PolicyMode.UNSPECIFIED } });
    expect(parseCommand(unspecified, NOW).command).toEqual({ kind: "set-mode", mode: "disabled", audit: null });
    rejects(unspecified, /UNSPECIFIED/, true);
    const bulk = create(ControlCommandSchema, { id: "a", command: { case: "bulkUpdate", value: { allowCidrs: [{ cidr: "10.0.0.0/8" }] } } });
    expect(parseCommand(bulk, NOW).command).toMatchObject({ kind: "bulk-update", mode: "disabled" });
    rejects(bulk, /bulk_update\.mode is POLICY_MODE_UNSPECIFIED/, true);
    const dnsUnspecified = cmd({ case: "setDnsMode", value: { $typeName: "netfence.v1.SetDnsMode", mode: DnsMode.UNSPECIFIED } });
    expect(parseCommand(dnsUnspecified, NOW).command).toEqual({ kind: "set-dns-mode", mode: "disabled" });
    rejects(dnsUnspecified, /DNS_MODE_UNSPECIFIED/, true);
    rejects(cmd({ case: "setMode", value: { $typeName: "netfence.v1.SetMode", mode: 42 as PolicyMode } }), /unknown policy mode 42/);
    rejects(cmd({ case: "setDnsMode", value: { $typeName: "netfence.v1.SetDnsMode", mode: 9 as DnsMode } }), /unknown DNS mode/);
  });

  it("maps DNS modes", () => {
    const pairs: Array<[DnsMode, string]> = [
      [DnsMode.DISABLED, "disabled"],
      [DnsMode.ALLOWLIST, "allowlist"],
      [DnsMode.DENYLIST, "denylist"],
      [DnsMode.PROXY, "proxy"],
    ];
    for (const [mode, name] of pairs) {
      expect(parseCommand(cmd({ case: "setDnsMode", value: { $typeName: "netfence.v1.SetDnsMode", mode } }), NOW).command)
        .toEqual({ kind: "set-dns-mode", mode: name });
    }
  });

  it("parses domains and rejects empty or over-long ones", () => {
    const allow = parseCommand(create(ControlCommandSchema, { id: "a", command: { case: "allowDomain", value: { domain: "PyPI.org.", includeSubdomains: true } } }), NOW);
    expect(allow.command).toEqual({ kind: "allow-domain", rule: { domain: "pypi.org", includeSubdomains: true } });
    const wildcard = parseCommand(create(ControlCommandSchema, { id: "a", command: { case: "denyDomain", value: { domain: "*.evil.example" } } }), NOW);
    expect(wildcard.command).toEqual({ kind: "deny-domain", rule: { domain: "evil.example", includeSubdomains: true } });
    expect(parseCommand(create(ControlCommandSchema, { id: "a", command: { case: "removeDomain", value: "x.org" } }), NOW).command)
      .toEqual({ kind: "remove-domain", domain: "x.org" });
    rejects(create(ControlCommandSchema, { id: "a", command: { case: "allowDomain", value: { domain: "" } } }), /allow_domain\.domain: domain is empty/);
    rejects(create(ControlCommandSchema, { id: "a", command: { case: "denyDomain", value: { domain: `${"a".repeat(60)}.`.repeat(5) + "com" } } }), /longer than 253/);
    rejects(create(ControlCommandSchema, { id: "a", command: { case: "removeDomain", value: "bad domain!" } }), /remove_domain/);
  });

  it("parses BulkUpdate with and without dns", () => {
    const withDns = parseCommand(create(ControlCommandSchema, {
      id: "a",
      command: {
        case: "bulkUpdate",
        value: {
          mode: PolicyMode.ALLOWLIST,
          allowCidrs: [{ cidr: "10.0.0.0/8" }, { cidr: "192.168.1.1" }],
          denyCidrs: [{ cidr: "10.9.0.0/16" }],
          dns: { mode: DnsMode.ALLOWLIST, allowDomains: [{ domain: "example.com" }], upstreamServers: ["127.0.0.1:5353", "::1"] },
        },
      },
    }), NOW);
    expect(withDns.command.kind).toBe("bulk-update");
    if (withDns.command.kind === "bulk-update") {
      expect(withDns.command.allowCidrs.map((r) => formatCidr(r.cidr))).toEqual(["10.0.0.0/8", "192.168.1.1/32"]);
      expect(withDns.command.dns).toEqual({
        mode: "allowlist",
        allowDomains: [{ domain: "example.com", includeSubdomains: false }],
        denyDomains: [],
        upstreams: ["127.0.0.1:5353", "[::1]:53"],
      });
    }
    // Without dns: DNS filtering off and its rules cleared (Go original); keep_dns leaves them as they are.
    const noDns = parseCommand(create(ControlCommandSchema, { id: "a", command: { case: "bulkUpdate", value: { mode: PolicyMode.BLOCK_ALL } } }), NOW);
    expect(noDns.command).toMatchObject({ kind: "bulk-update", mode: "block-all", dns: { mode: "disabled", allowDomains: [], denyDomains: [], upstreams: [] } });
    const keep = parseCommand(create(ControlCommandSchema, { id: "a", command: { case: "bulkUpdate", value: { mode: PolicyMode.BLOCK_ALL, keepDns: true } } }), NOW);
    expect(keep.command).toMatchObject({ kind: "bulk-update", mode: "block-all", dns: null });
  });

  it("skips a bad entry of a BulkUpdate and reports it (Go original); strict rejects the whole update, naming the index", () => {
    const bad = create(ControlCommandSchema, {
      id: "a",
      command: {
        case: "bulkUpdate",
        value: {
          mode: PolicyMode.ALLOWLIST,
          allowCidrs: [{ cidr: "10.0.0.0/8" }, { cidr: "300.1.1.1" }, { cidr: "192.0.2.0/24" }],
          dns: { mode: DnsMode.ALLOWLIST, allowDomains: [{ domain: "ok.example" }, { domain: "bad domain!" }], upstreamServers: ["dns.google"] },
        },
      },
    });
    const parsed = parseCommand(bad, NOW);
    expect(parsed.command.kind === "bulk-update" && parsed.command.allowCidrs.map((r) => formatCidr(r.cidr))).toEqual(["10.0.0.0/8", "192.0.2.0/24"]);
    expect(parsed.command.kind === "bulk-update" && parsed.command.dns).toMatchObject({ allowDomains: [{ domain: "ok.example" }], upstreams: [] });
    expect(parsed.skipped).toHaveLength(3);
    expect(parsed.skipped[0]).toMatch(/^bulk_update\.allow_cidrs\[1\]\.cidr: invalid CIDR "300\.1\.1\.1"/);
    expect(parsed.skipped[1]).toMatch(/^bulk_update\.dns\.allow_domains\[1\]\.domain/);
    expect(parsed.skipped[2]).toMatch(/^bulk_update\.dns\.upstream_servers\[0\]/);
    rejects(bad, /bulk_update\.allow_cidrs\[1\]\.cidr/, true);
    // A single-entry command is never "skipped": a bad CIDR rejects it in both semantics.
    rejects(cmd({ case: "allowCidr", value: { $typeName: "netfence.v1.CIDREntry", cidr: "10.0.0.0/33" } }), /allow_cidr\.cidr/);
  });

  it("rejects a missing oneof, acks as commands, and bad attachment ids", () => {
    rejects(create(ControlCommandSchema, { id: "a" }), /no command set/);
    rejects(create(ControlCommandSchema, { id: "a", command: { case: "syncAck", value: {} } }), /not a policy command/);
    rejects(create(ControlCommandSchema, { id: "", command: { case: "removeCidr", value: "1.1.1.1" } }), /empty attachment id/);
    rejects(create(ControlCommandSchema, { id: "../etc", command: { case: "removeCidr", value: "1.1.1.1" } }), /not of the form/);
  });
});

describe("parseSubscribedAck", () => {
  it("gives the full initial policy", () => {
    const { policy } = parseSubscribedAck(create(SubscribedAckSchema, {
      mode: PolicyMode.DENYLIST,
      denyCidrs: [{ cidr: "169.254.169.254/32", ttl: create(DurationSchema, { seconds: 60n }) }],
      dns: { mode: DnsMode.DENYLIST, denyDomains: [{ domain: "evil.example", includeSubdomains: true }] },
    }), NOW);
    expect(policy.mode).toBe("denylist");
    expect(policy.audit).toBe(false);
    expect(policy.allowCidrs).toEqual([]);
    expect(policy.denyCidrs.map((r) => [formatCidr(r.cidr), r.expiresAtMs])).toEqual([["169.254.169.254/32", NOW + 60_000]]);
    expect(policy.dns.mode).toBe("denylist");
    expect(policy.dns.denyDomains).toEqual([{ domain: "evil.example", includeSubdomains: true }]);
  });

  it("defaults DNS to disabled without dns", () => {
    expect(parseSubscribedAck(create(SubscribedAckSchema, { mode: PolicyMode.ALLOWLIST }), NOW).policy.dns.mode).toBe("disabled");
  });

  it("accepts an empty SubscribedAck as disabled (the Go original's starting state), strict or not, but rejects unknown modes", () => {
    for (const strict of [false, true]) {
      const empty = parseSubscribedAck(create(SubscribedAckSchema, {}), NOW, { strict }).policy;
      expect([empty.mode, empty.dns.mode, empty.allowCidrs, empty.denyCidrs]).toEqual(["disabled", "disabled", [], []]);
      expect(parseSubscribedAck(create(SubscribedAckSchema, { mode: PolicyMode.BLOCK_ALL, dns: {} }), NOW, { strict }).policy.dns.mode).toBe("disabled");
    }
    expect(() => parseSubscribedAck(create(SubscribedAckSchema, { mode: 77 as PolicyMode }), NOW)).toThrow(/subscribed_ack\.mode has unknown policy mode 77/);
  });

  it("skips a bad CIDR of a SubscribedAck (Go original); strict rejects the ack", () => {
    const ack = create(SubscribedAckSchema, { mode: PolicyMode.ALLOWLIST, allowCidrs: [{ cidr: "10.0.0.0/8" }, { cidr: "10.0.0.0/99" }], denyCidrs: [{ cidr: "nope" }] });
    const { policy, skipped } = parseSubscribedAck(ack, NOW);
    expect(policy.allowCidrs.map((r) => formatCidr(r.cidr))).toEqual(["10.0.0.0/8"]);
    expect(policy.denyCidrs).toEqual([]);
    expect(skipped.map((m) => m.split(":")[0])).toEqual(["subscribed_ack.allow_cidrs[1].cidr", "subscribed_ack.deny_cidrs[0].cidr"]);
    expect(() => parseSubscribedAck(ack, NOW, { strict: true })).toThrow(/subscribed_ack\.allow_cidrs\[1\]\.cidr/);
  });
});

describe("parseUpstream", () => {
  it("normalises and validates", () => {
    expect(parseUpstream("10.0.0.2", "f")).toBe("10.0.0.2:53");
    expect(parseUpstream("[2001:db8::1]:5353", "f")).toBe("[2001:db8::1]:5353");
    expect(() => parseUpstream("10.0.0.2:99999", "f")).toThrow(/out of range/);
    expect(() => parseUpstream("dns.google:53", "f")).toThrow(/not an IP/);
    expect(() => parseUpstream("10.0.0.0/8", "f")).toThrow();
  });
});

describe("audit mode fields (extensions SetMode.audit 100, BulkUpdate.audit 101, SubscribedAck.audit 100)", () => {
  it("SetMode: absent keeps the attachment's setting (null), present sets it", () => {
    const setMode = (value: { mode: PolicyMode; audit?: boolean }): unknown =>
      parseCommand(cmd({ case: "setMode", value: { $typeName: "netfence.v1.SetMode", ...value } }), NOW).command;
    expect(setMode({ mode: PolicyMode.ALLOWLIST })).toEqual({ kind: "set-mode", mode: "allowlist", audit: null });
    expect(setMode({ mode: PolicyMode.ALLOWLIST, audit: true })).toEqual({ kind: "set-mode", mode: "allowlist", audit: true });
    expect(setMode({ mode: PolicyMode.ALLOWLIST, audit: false })).toEqual({ kind: "set-mode", mode: "allowlist", audit: false });
  });

  it("BulkUpdate restates it: absent (a Go-original control plane) is false", () => {
    const bulk = (audit?: boolean): unknown =>
      parseCommand(create(ControlCommandSchema, { id: "a", command: { case: "bulkUpdate", value: { mode: PolicyMode.ALLOWLIST, ...(audit === undefined ? {} : { audit }) } } }), NOW).command;
    expect(bulk()).toMatchObject({ kind: "bulk-update", audit: false });
    expect(bulk(true)).toMatchObject({ kind: "bulk-update", audit: true });
  });

  it("SubscribedAck: the initial policy's audit flag, false when absent", () => {
    expect(parseSubscribedAck(create(SubscribedAckSchema, { mode: PolicyMode.ALLOWLIST }), NOW).policy.audit).toBe(false);
    expect(parseSubscribedAck(create(SubscribedAckSchema, { mode: PolicyMode.ALLOWLIST, audit: true }), NOW).policy.audit).toBe(true);
  });

  it("a Go-original encoder's SetMode (no field 100 on the wire) decodes as absent", () => {
    // SetMode{mode: ALLOWLIST} as protoc for the original schema writes it: field 1, varint 1.
    const wire = new Uint8Array([0x08, 0x01]);
    expect(fromBinary(SetModeSchema, wire).audit).toBeUndefined();
    expect(fromBinary(SetModeSchema, toBinary(SetModeSchema, create(SetModeSchema, { mode: PolicyMode.ALLOWLIST, audit: false }))).audit).toBe(false);
  });
});
