import type { Duration } from "@bufbuild/protobuf/wkt";
import {
  type BulkUpdate,
  type CIDREntry,
  type ControlCommand,
  type DnsConfig,
  type DomainEntry,
  type SubscribedAck,
} from "@netfence/proto/control";
import { DnsMode, PolicyMode } from "@netfence/proto/types";
import { NetfenceError, invalidArgument, isNetfenceError } from "@netfence/proto/errors";
import { formatAddr, parseCidr, type Cidr } from "@netfence/proto/parse";

import { normalizeDomain } from "@netfence/proto/parse";
import type { FilterMode } from "../datapath/filter.js";
import { EMPTY_DNS_POLICY, type AttachmentPolicy, type CidrRule, type DnsModeName, type DnsPolicy, type DomainRule, type PolicyCommand } from "../policy/policy.js";

/**
 * The validation edge for control-plane commands: protobuf in, typed policy values out, or one
 * INVALID_ARGUMENT naming the command and the field. Nothing here touches the daemon's state, so
 * an invalid command is rejected before anything changes.
 *
 * Two semantics (SPEC §2). By default those of the Go original, which control planes written for
 * it rely on: a mode UNSPECIFIED means DISABLED, and a bad entry in a list of a SubscribedAck or
 * BulkUpdate (a CIDR, a domain, an upstream) is skipped — reported in `skipped` — while the rest
 * applies. `strict` (the SyncAck.strict extension) rejects both instead, as a whole.
 */

export interface ParseOptions {
  /** Netfence's stricter validation (SyncAck.strict): UNSPECIFIED modes and any bad list entry reject the whole command. */
  readonly strict?: boolean;
}

export interface ParsedCommand {
  /** ControlCommand.id: the attachment the command is for. */
  readonly attachmentId: string;
  /** The extension command_id (field 100); null when the control plane did not set it. */
  readonly commandId: string | null;
  readonly command: PolicyCommand;
  /** Entries left out (compatible semantics), each naming its field and what is wrong with it. */
  readonly skipped: readonly string[];
}

export interface ParsedSubscribedAck {
  readonly policy: AttachmentPolicy;
  readonly skipped: readonly string[];
}

/** A TTL above this is almost certainly a unit mistake (ms sent as s); reject it rather than overflow deadlines. */
export const MAX_TTL_SECONDS = 10 * 365 * 24 * 3600;
/** Bound on list sizes in one command so a hostile control plane cannot make us allocate without limit. */
export const MAX_RULES_PER_LIST = 1_000_000;
export const MAX_UPSTREAMS = 16;

const ATTACHMENT_ID = /^[A-Za-z0-9_-]{1,63}$/;

/**
 * Parses every command except SyncAck and SubscribedAck (which the connection handles itself).
 * `nowMs` is injectable for tests; TTLs become wall-clock deadlines `nowMs + ttl`.
 */
export function parseCommand(cmd: ControlCommand, nowMs: number = Date.now(), opts: ParseOptions = {}): ParsedCommand {
  const commandId = cmd.commandId === "" ? null : cmd.commandId;
  const attachmentId = parseAttachmentId(cmd.id);
  const c = cmd.command;
  const strict = opts.strict === true;
  const skipped: string[] = [];
  let command: PolicyCommand;
  switch (c.case) {
    case "setMode":
      command = { kind: "set-mode", mode: parsePolicyMode(c.value.mode, "set_mode.mode", strict) };
      break;
    case "allowCidr":
      command = { kind: "allow-cidr", rule: parseCidrEntry(c.value, "allow_cidr", nowMs) };
      break;
    case "denyCidr":
      command = { kind: "deny-cidr", rule: parseCidrEntry(c.value, "deny_cidr", nowMs) };
      break;
    case "removeCidr":
      command = { kind: "remove-cidr", cidr: parseCidrField(c.value, "remove_cidr") };
      break;
    case "bulkUpdate":
      command = parseBulkUpdate(c.value, nowMs, strict, skipped);
      break;
    case "setDnsMode":
      command = { kind: "set-dns-mode", mode: parseDnsMode(c.value.mode, "set_dns_mode.mode", strict) };
      break;
    case "allowDomain":
      command = { kind: "allow-domain", rule: parseDomainEntry(c.value, "allow_domain") };
      break;
    case "denyDomain":
      command = { kind: "deny-domain", rule: parseDomainEntry(c.value, "deny_domain") };
      break;
    case "removeDomain":
      command = { kind: "remove-domain", domain: parseDomainField(c.value, "remove_domain").domain };
      break;
    case "syncAck":
    case "subscribedAck":
      throw invalidArgument(`${c.case === "syncAck" ? "sync_ack" : "subscribed_ack"} is not a policy command`);
    case undefined:
      throw invalidArgument("command has no command set (empty oneof, or a command unknown to this daemon)");
  }
  return { attachmentId, commandId, command, skipped };
}

/**
 * The initial policy carried by a SubscribedAck. Without `dns` the DNS policy is disabled with no
 * rules. An UNSPECIFIED mode (an empty `SubscribedAck{}`, which the Go original accepted: its
 * attachments start DISABLED) means "disabled" — in strict mode too, since an empty ack is how
 * a control plane says "no policy yet".
 */
export function parseSubscribedAck(ack: SubscribedAck, nowMs: number = Date.now(), opts: ParseOptions = {}): ParsedSubscribedAck {
  const strict = opts.strict === true;
  const skipped: string[] = [];
  const policy: AttachmentPolicy = {
    mode: parsePolicyMode(ack.mode, "subscribed_ack.mode", false),
    audit: false,
    allowCidrs: parseCidrList(ack.allowCidrs, "subscribed_ack.allow_cidrs", nowMs, strict, skipped),
    denyCidrs: parseCidrList(ack.denyCidrs, "subscribed_ack.deny_cidrs", nowMs, strict, skipped),
    dns: ack.dns === undefined ? EMPTY_DNS_POLICY : parseDnsConfig(ack.dns, "subscribed_ack.dns", false, strict, skipped),
  };
  return { policy, skipped };
}

export function parseAttachmentId(id: string): string {
  if (!ATTACHMENT_ID.test(id)) {
    throw invalidArgument(
      id === "" ? "command has an empty attachment id" : `attachment id "${truncate(id)}" is not of the form [A-Za-z0-9_-]{1,63}`,
    );
  }
  return id;
}

/**
 * BulkUpdate: a full replacement. Without `dns`, DNS filtering is turned off and its rules
 * cleared, as the Go original does — unless the extension `keep_dns` asks to leave them as they
 * are. (Addresses learned from DNS answers stay until their TTL either way.)
 */
function parseBulkUpdate(b: BulkUpdate, nowMs: number, strict: boolean, skipped: string[]): PolicyCommand {
  return {
    kind: "bulk-update",
    mode: parsePolicyMode(b.mode, "bulk_update.mode", strict),
    allowCidrs: parseCidrList(b.allowCidrs, "bulk_update.allow_cidrs", nowMs, strict, skipped),
    denyCidrs: parseCidrList(b.denyCidrs, "bulk_update.deny_cidrs", nowMs, strict, skipped),
    dns: b.dns === undefined ? (b.keepDns ? null : EMPTY_DNS_POLICY) : parseDnsConfig(b.dns, "bulk_update.dns", strict, strict, skipped),
  };
}

/** UNSPECIFIED is DISABLED (the Go original, and proto3's zero value) unless `strict`. */
export function parsePolicyMode(mode: PolicyMode, field: string, strict = true): FilterMode {
  switch (mode) {
    case PolicyMode.DISABLED: return "disabled";
    case PolicyMode.ALLOWLIST: return "allowlist";
    case PolicyMode.DENYLIST: return "denylist";
    case PolicyMode.BLOCK_ALL: return "block-all";
    case PolicyMode.UNSPECIFIED:
      if (!strict) return "disabled";
      throw invalidArgument(`${field} is POLICY_MODE_UNSPECIFIED; send DISABLED, ALLOWLIST, DENYLIST or BLOCK_ALL`);
    default:
      throw invalidArgument(`${field} has unknown policy mode ${String(mode)}`);
  }
}

/** UNSPECIFIED is DISABLED unless `strict`, as for policy modes. */
export function parseDnsMode(mode: DnsMode, field: string, strict = true): DnsModeName {
  switch (mode) {
    case DnsMode.DISABLED: return "disabled";
    case DnsMode.ALLOWLIST: return "allowlist";
    case DnsMode.DENYLIST: return "denylist";
    case DnsMode.PROXY: return "proxy";
    case DnsMode.UNSPECIFIED:
      if (!strict) return "disabled";
      throw invalidArgument(`${field} is DNS_MODE_UNSPECIFIED; send DISABLED, ALLOWLIST, DENYLIST or PROXY`);
    default:
      throw invalidArgument(`${field} has unknown DNS mode ${String(mode)}`);
  }
}

/**
 * Parses each entry of a list. A bad entry rejects the whole command when `strict`; otherwise it
 * is left out and described in `skipped` (the Go original logs and skips it). The list's size is
 * bounded either way.
 */
function parseEach<E, T>(entries: readonly E[], field: string, strict: boolean, skipped: string[], parse: (e: E, field: string) => T): T[] {
  if (entries.length > MAX_RULES_PER_LIST) throw invalidArgument(`${field} has ${entries.length} entries (max ${MAX_RULES_PER_LIST})`);
  const out: T[] = [];
  entries.forEach((e, i) => {
    try {
      out.push(parse(e, `${field}[${i}]`));
    } catch (err) {
      if (strict || !(isNetfenceError(err) && err.code === "INVALID_ARGUMENT")) throw err;
      skipped.push(err.message);
    }
  });
  return out;
}

function parseCidrList(entries: readonly CIDREntry[], field: string, nowMs: number, strict: boolean, skipped: string[]): CidrRule[] {
  return parseEach(entries, field, strict, skipped, (e, f) => parseCidrEntry(e, f, nowMs));
}

function parseCidrEntry(entry: CIDREntry, field: string, nowMs: number): CidrRule {
  const cidr = parseCidrField(entry.cidr, `${field}.cidr`);
  const ttlMs = entry.ttl === undefined ? 0 : parseTtlMs(entry.ttl, `${field}.ttl`);
  return { cidr, expiresAtMs: ttlMs === 0 ? null : nowMs + ttlMs };
}

function parseCidrField(text: string, field: string): Cidr {
  return withField(field, () => parseCidr(text));
}

/** Duration → milliseconds. Zero means "no TTL" (as in the Go original); negative, malformed or huge is rejected. */
export function parseTtlMs(ttl: Duration, field: string): number {
  const seconds = ttl.seconds;
  const nanos = ttl.nanos;
  if (nanos < -999_999_999 || nanos > 999_999_999) throw invalidArgument(`${field} has nanos ${nanos} out of range`);
  if ((seconds > 0n && nanos < 0) || (seconds < 0n && nanos > 0)) throw invalidArgument(`${field} has seconds and nanos of different signs`);
  if (seconds < 0n || nanos < 0) throw invalidArgument(`${field} is negative (${seconds}s)`);
  if (seconds > BigInt(MAX_TTL_SECONDS)) throw invalidArgument(`${field} of ${seconds}s exceeds the maximum of ${MAX_TTL_SECONDS}s (10 years)`);
  const ms = Number(seconds) * 1000 + Math.ceil(nanos / 1_000_000);
  return ms;
}

/** `strictMode`: an UNSPECIFIED DNS mode is rejected; `strict`: a bad entry is too (else skipped). */
function parseDnsConfig(dns: DnsConfig, field: string, strictMode: boolean, strict: boolean, skipped: string[]): DnsPolicy {
  if (dns.upstreamServers.length > MAX_UPSTREAMS) {
    throw invalidArgument(`${field}.upstream_servers has ${dns.upstreamServers.length} entries (max ${MAX_UPSTREAMS})`);
  }
  return {
    mode: parseDnsMode(dns.mode, `${field}.mode`, strictMode),
    allowDomains: parseEach(dns.allowDomains, `${field}.allow_domains`, strict, skipped, parseDomainEntry),
    denyDomains: parseEach(dns.denyDomains, `${field}.deny_domains`, strict, skipped, parseDomainEntry),
    upstreams: parseEach(dns.upstreamServers, `${field}.upstream_servers`, strict, skipped, parseUpstream),
  };
}

function parseDomainEntry(entry: DomainEntry, field: string): DomainRule {
  const parsed = parseDomainField(entry.domain, `${field}.domain`);
  return { domain: parsed.domain, includeSubdomains: entry.includeSubdomains || parsed.wildcard };
}

/**
 * A domain, optionally written "*.example.com" — accepted as example.com with subdomains,
 * since that is how operators write it in the README of the original.
 */
function parseDomainField(text: string, field: string): { domain: string; wildcard: boolean } {
  const trimmed = text.trim();
  const wildcard = trimmed.startsWith("*.");
  const domain = withField(field, () => normalizeDomain(wildcard ? trimmed.slice(2) : trimmed));
  return { domain, wildcard };
}

/** "ip", "ip:port" or "[v6]:port" → canonical "ip:port" / "[v6]:port" (port defaults to 53). */
export function parseUpstream(text: string, field: string): string {
  const raw = text.trim();
  let host = raw;
  let port = 53;
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(raw);
  if (bracketed) {
    host = bracketed[1]!;
    if (bracketed[2] !== undefined) port = Number(bracketed[2]);
  } else {
    const colons = raw.split(":").length - 1;
    if (colons === 1) {
      const [h, p] = raw.split(":");
      host = h!;
      if (!/^\d{1,5}$/.test(p!)) throw invalidArgument(`${field} "${truncate(text)}" has a bad port`);
      port = Number(p);
    }
  }
  if (port < 1 || port > 65535) throw invalidArgument(`${field} "${truncate(text)}" has port ${port} out of range`);
  const addr = withField(field, () => parseCidr(host));
  if (addr.prefixLen !== (addr.family === 4 ? 32 : 128) || host.includes("/")) {
    throw invalidArgument(`${field} "${truncate(text)}" must be an IP address, not a prefix`);
  }
  const canonical = formatAddr(addr.family, addr.addr);
  return addr.family === 4 ? `${canonical}:${port}` : `[${canonical}]:${port}`;
}

function withField<T>(field: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (isNetfenceError(err)) {
      throw new NetfenceError(err.code, `${field}: ${err.message}`, { details: { ...err.details, field }, cause: err });
    }
    throw err;
  }
}

function truncate(s: string): string {
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
