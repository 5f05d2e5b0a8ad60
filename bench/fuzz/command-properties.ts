import fc from "fast-check";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import {
  BulkUpdateSchema, CIDREntrySchema, ControlCommandSchema, DnsConfigSchema, DomainEntrySchema, SubscribedAckSchema,
  type ControlCommand,
} from "@netfence/proto/control";
import { isNetfenceError } from "@netfence/proto/errors";
import { MAX_TTL_SECONDS, parseCommand, parseSubscribedAck } from "../../daemon/src/control-plane/parse-command.js";
import { formatCidr } from "@netfence/proto/parse";
import { normalizeDomain } from "@netfence/proto/parse";
import type { CidrRule, PolicyCommand } from "../../daemon/src/policy/policy.js";

/**
 * Properties of the control-plane command validator (daemon/src/control-plane/parse-command.ts),
 * the edge every ControlCommand from a (possibly hostile or buggy) control plane crosses:
 * it returns a typed command whose values are all valid, or throws a NetfenceError
 * INVALID_ARGUMENT — never anything else, whatever the message holds.
 */

const NOW = 1_700_000_000_000;

const cidrText = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.nat(300), fc.nat(300), fc.nat(300), fc.nat(300), fc.option(fc.nat(40), { nil: undefined })).map(([a, b, c, d, l]) => `${a}.${b}.${c}.${d}${l === undefined ? "" : `/${l}`}`) },
  { weight: 2, arbitrary: fc.tuple(fc.array(fc.nat(0x1ffff), { minLength: 1, maxLength: 9 }), fc.option(fc.nat(140), { nil: undefined })).map(([g, l]) => `${g.map((x) => x.toString(16)).join(":")}${l === undefined ? "" : `/${l}`}`) },
  { weight: 1, arbitrary: fc.constantFrom("::/0", "::", "::ffff:1.2.3.4", "0x0a.0.0.1", "1.2.3", "10.0.0.0/33", "::/129", " 10.0.0.1 ", "10.0.0.01", "", "fe80::1%eth0") },
  { weight: 1, arbitrary: fc.string({ maxLength: 70 }) },
);
const domainText = fc.oneof(
  fc.stringMatching(/^(\*\.)?([a-z0-9_-]{1,20}\.){0,4}[a-z]{1,10}\.?$/),
  fc.string({ maxLength: 300 }),
  fc.constantFrom("", ".", "*.", "a..b", "-.com", "x".repeat(64) + ".com", `${"a.".repeat(130)}com`, "EXAMPLE.COM."),
);
const duration = fc.option(
  fc.record({ seconds: fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }), nanos: fc.integer({ min: -2_000_000_000, max: 2_000_000_000 }) }).map((d) => create(DurationSchema, d)),
  { nil: undefined },
);
const cidrEntry = fc.record({ cidr: cidrText, ttl: duration }).map((e) => create(CIDREntrySchema, e));
const domainEntry = fc.record({ domain: domainText, includeSubdomains: fc.boolean() }).map((e) => create(DomainEntrySchema, e));
const enumValue = fc.oneof(fc.integer({ min: 0, max: 5 }), fc.integer({ min: -5, max: 1000 }));
const upstream = fc.oneof(fc.constantFrom("10.0.0.53", "10.0.0.53:5353", "[fd00::53]:53", "fd00::53", "1.2.3.4:0", "1.2.3.4:99999", "resolver.example", "10.0.0.0/8"), fc.string({ maxLength: 40 }));
const dnsConfig = fc.option(
  fc.record({
    mode: enumValue,
    allowDomains: fc.array(domainEntry, { maxLength: 5 }),
    denyDomains: fc.array(domainEntry, { maxLength: 5 }),
    upstreamServers: fc.array(upstream, { maxLength: 20 }),
  }).map((d) => create(DnsConfigSchema, d)),
  { nil: undefined },
);
const attachmentId = fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,63}$/), fc.string({ maxLength: 80 }), fc.constant(""));

const command = fc.oneof(
  enumValue.map((mode) => ({ case: "setMode" as const, value: { mode } })),
  cidrEntry.map((value) => ({ case: "allowCidr" as const, value })),
  cidrEntry.map((value) => ({ case: "denyCidr" as const, value })),
  cidrText.map((value) => ({ case: "removeCidr" as const, value })),
  fc.record({ mode: enumValue, allowCidrs: fc.array(cidrEntry, { maxLength: 6 }), denyCidrs: fc.array(cidrEntry, { maxLength: 6 }), dns: dnsConfig })
    .map((b) => ({ case: "bulkUpdate" as const, value: create(BulkUpdateSchema, b) })),
  enumValue.map((mode) => ({ case: "setDnsMode" as const, value: { mode } })),
  domainEntry.map((value) => ({ case: "allowDomain" as const, value })),
  domainEntry.map((value) => ({ case: "denyDomain" as const, value })),
  domainText.map((value) => ({ case: "removeDomain" as const, value })),
  fc.constant({ case: undefined, value: undefined }),
);

/** Structured ControlCommands: every field kind, valid and invalid values. */
export const controlCommand: fc.Arbitrary<ControlCommand> = fc
  .record({ id: attachmentId, commandId: fc.oneof(fc.constant(""), fc.string({ maxLength: 20 })), command })
  .map((c) => create(ControlCommandSchema, c as Parameters<typeof create<typeof ControlCommandSchema>>[1]));

/** What a control plane can put on the wire: the bytes of a command, damaged or random. */
export const commandBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  controlCommand.map((c) => toBinary(ControlCommandSchema, c)),
  fc.tuple(controlCommand, fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 4 }), fc.option(fc.nat(), { nil: undefined })).map(([c, flips, cut]) => {
    let b = toBinary(ControlCommandSchema, c);
    for (const [at, v] of flips) if (b.length > 0) b[at % b.length] = v;
    if (cut !== undefined) b = b.subarray(0, cut % (b.length + 1));
    return b;
  }),
  fc.uint8Array({ maxLength: 200 }),
);

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`invariant broken: ${what}`);
}

function validRule(r: CidrRule): void {
  check(r.cidr.prefixLen >= 0 && r.cidr.prefixLen <= (r.cidr.family === 4 ? 32 : 128), "prefix length in range");
  check(r.cidr.addr.length === (r.cidr.family === 4 ? 4 : 16), "address length");
  check(r.expiresAtMs === null || (r.expiresAtMs > NOW && r.expiresAtMs <= NOW + MAX_TTL_SECONDS * 1000 + 1000), "deadline in range");
  check(formatCidr(r.cidr).length > 0, "formats");
}

function validDomain(d: string): void {
  check(normalizeDomain(d) === d, `domain ${d} is canonical`);
}

function validCommand(c: PolicyCommand): void {
  switch (c.kind) {
    case "allow-cidr":
    case "deny-cidr":
      return validRule(c.rule);
    case "bulk-update":
      c.allowCidrs.forEach(validRule);
      c.denyCidrs.forEach(validRule);
      if (c.dns !== null) {
        c.dns.allowDomains.forEach((d) => validDomain(d.domain));
        c.dns.denyDomains.forEach((d) => validDomain(d.domain));
      }
      return;
    case "allow-domain":
    case "deny-domain":
      return validDomain(c.rule.domain);
    case "remove-domain":
      return validDomain(c.domain);
    default:
      return;
  }
}

/** parseCommand: a valid typed command or INVALID_ARGUMENT, nothing else. */
export function commandProperty(cmd: ControlCommand): "accepted" | "rejected" {
  try {
    const parsed = parseCommand(cmd, NOW);
    check(/^[A-Za-z0-9_-]{1,63}$/.test(parsed.attachmentId), "attachment id");
    validCommand(parsed.command);
    return "accepted";
  } catch (err) {
    if (isNetfenceError(err) && err.code === "INVALID_ARGUMENT") return "rejected";
    throw err;
  }
}

/** The same from wire bytes; bytes protobuf cannot decode are rejected by the gRPC layer before us. */
export function commandBytesProperty(bytes: Uint8Array): "accepted" | "rejected" | "undecodable" {
  let cmd: ControlCommand;
  try {
    cmd = fromBinary(ControlCommandSchema, bytes);
  } catch {
    return "undecodable";
  }
  const outcome = commandProperty(cmd);
  // A SubscribedAck parse of the same fields must hold to the same contract.
  if (cmd.command.case === "bulkUpdate") {
    try {
      const b = cmd.command.value;
      parseSubscribedAck(create(SubscribedAckSchema, { mode: b.mode, allowCidrs: b.allowCidrs, denyCidrs: b.denyCidrs, dns: b.dns }), NOW);
    } catch (err) {
      if (!(isNetfenceError(err) && err.code === "INVALID_ARGUMENT")) throw err;
    }
  }
  return outcome;
}
