import {
  type BulkUpdate,
  type CIDREntry,
  type ControlCommand,
  type DnsConfig,
  type DomainEntry,
  type SubscribedAck,
} from "@netfence/proto/control";
import { DnsMode, EstablishedMode as WireEstablished, PolicyMode } from "@netfence/proto/types";
import { NetfenceError, invalidArgument, isNetfenceError } from "@netfence/proto/errors";
import { dnsModeFromWire, policyModeFromWire } from "@netfence/proto/modes";
import {
  ATTACHMENT_ID_FORM, MAX_TTL_SECONDS, durationToMs, isAttachmentId, parseCidr, parseDomainPattern, parseHostPort, parseRuleScope,
  type Cidr, type PrincipalLookup, type RuleScope,
} from "@netfence/proto/parse";
import type { RuleScope as WireRuleScope } from "@netfence/proto/control";
import type { FilterMode } from "../datapath/filter.js";
import {
  EMPTY_DNS_POLICY, type AttachmentPolicy, type CidrRule, type DnsModeName, type DnsPolicy, type DomainRule, type EstablishedMode, type PolicyCommand,
} from "../policy/policy.js";

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
  /** User and group names → ids, resolved beforehand (command-principals.ts); absent: a name is an error. */
  readonly principals?: PrincipalLookup;
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

export { MAX_TTL_SECONDS };
/** Bound on list sizes in one command so a hostile control plane cannot make us allocate without limit. */
export const MAX_RULES_PER_LIST = 1_000_000;
export const MAX_UPSTREAMS = 16;

/**
 * Parses every command except SyncAck and SubscribedAck (which the connection handles itself).
 * `nowMs` is injectable for tests; TTLs become wall-clock deadlines `nowMs + ttl`.
 */
export function parseCommand(cmd: ControlCommand, nowMs: number = Date.now(), opts: ParseOptions = {}): ParsedCommand {
  const commandId = cmd.commandId === "" ? null : cmd.commandId;
  const attachmentId = parseAttachmentId(cmd.id);
  const c = cmd.command;
  const strict = opts.strict === true;
  const lookup = opts.principals ?? null;
  const skipped: string[] = [];
  let command: PolicyCommand;
  switch (c.case) {
    case "setMode":
      command = { kind: "set-mode", mode: parsePolicyMode(c.value.mode, "set_mode.mode", strict), audit: c.value.audit ?? null };
      break;
    case "allowCidr":
      command = { kind: "allow-cidr", rule: parseCidrEntry(c.value, "allow_cidr", nowMs, lookup) };
      break;
    case "denyCidr":
      command = { kind: "deny-cidr", rule: parseCidrEntry(c.value, "deny_cidr", nowMs, lookup) };
      break;
    case "removeCidr":
      command = { kind: "remove-cidr", cidr: parseCidrField(c.value, "remove_cidr") };
      break;
    case "bulkUpdate":
      command = parseBulkUpdate(c.value, nowMs, strict, skipped, lookup);
      break;
    case "setDnsMode":
      command = { kind: "set-dns-mode", mode: parseDnsMode(c.value.mode, "set_dns_mode.mode", strict) };
      break;
    case "allowDomain":
      command = { kind: "allow-domain", rule: parseDomainEntry(c.value, "allow_domain", lookup) };
      break;
    case "denyDomain":
      command = { kind: "deny-domain", rule: parseDenyDomainEntry(c.value, "deny_domain") };
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
  const lookup = opts.principals ?? null;
  const skipped: string[] = [];
  const established = parseEstablished(ack.established, "subscribed_ack.established");
  const policy: AttachmentPolicy = {
    mode: parsePolicyMode(ack.mode, "subscribed_ack.mode", false),
    audit: ack.audit,
    allowCidrs: parseCidrList(ack.allowCidrs, "subscribed_ack.allow_cidrs", nowMs, strict, skipped, lookup),
    denyCidrs: parseCidrList(ack.denyCidrs, "subscribed_ack.deny_cidrs", nowMs, strict, skipped, lookup),
    dns: ack.dns === undefined ? EMPTY_DNS_POLICY : parseDnsConfig(ack.dns, "subscribed_ack.dns", false, strict, skipped, lookup),
    ...(established === "keep" ? { established } : {}),
  };
  return { policy, skipped };
}

export function parseAttachmentId(id: string): string {
  if (!isAttachmentId(id)) {
    throw invalidArgument(
      id === "" ? "command has an empty attachment id" : `attachment id "${truncate(id)}" is not of the form ${ATTACHMENT_ID_FORM}`,
    );
  }
  return id;
}

/**
 * BulkUpdate: a full replacement. Without `dns`, DNS filtering is turned off and its rules
 * cleared, as the Go original does — unless the extension `keep_dns` asks to leave them as they
 * are. (Addresses learned from DNS answers stay until their TTL either way.)
 * Audit mode (extension `audit`) is restated too: absent means enforcing, which is all a control
 * plane written for the Go original can mean (it never turns audit on). So is `established`
 * (issue 15): absent = sever.
 */
function parseBulkUpdate(b: BulkUpdate, nowMs: number, strict: boolean, skipped: string[], lookup: PrincipalLookup | null): PolicyCommand {
  return {
    kind: "bulk-update",
    mode: parsePolicyMode(b.mode, "bulk_update.mode", strict),
    audit: b.audit,
    allowCidrs: parseCidrList(b.allowCidrs, "bulk_update.allow_cidrs", nowMs, strict, skipped, lookup),
    denyCidrs: parseCidrList(b.denyCidrs, "bulk_update.deny_cidrs", nowMs, strict, skipped, lookup),
    dns: b.dns === undefined ? (b.keepDns ? null : EMPTY_DNS_POLICY) : parseDnsConfig(b.dns, "bulk_update.dns", strict, strict, skipped, lookup),
    established: parseEstablished(b.established, "bulk_update.established"),
  };
}

/** EstablishedMode (issue 15): UNSPECIFIED (a control plane written for the Go original) = sever. */
export function parseEstablished(mode: WireEstablished, field: string): EstablishedMode {
  switch (mode) {
    case WireEstablished.UNSPECIFIED:
    case WireEstablished.SEVER:
      return "sever";
    case WireEstablished.KEEP:
      return "keep";
    default:
      throw invalidArgument(`${field} has unknown established mode ${String(mode)}`);
  }
}

/** A RuleScope message → the shared parser (undefined = unscoped). Errors are never skipped (see the header). */
function parseScopeField(scope: WireRuleScope | undefined, field: string, lookup: PrincipalLookup | null): RuleScope | undefined {
  if (scope === undefined) return undefined;
  try {
    return parseRuleScope({ protocols: scope.protocols, ports: scope.ports.map((p) => ({ from: p.from, to: p.to })), users: scope.users, groups: scope.groups }, field, lookup);
  } catch (err) {
    const nfe = NetfenceError.from(err, "INVALID_ARGUMENT");
    throw new NetfenceError(nfe.code, nfe.message, { details: { ...nfe.details, field, [NOT_SKIPPABLE]: true }, cause: nfe });
  }
}

/** Set in the details of an error that rejects the whole command even under the Go original's semantics. */
const NOT_SKIPPABLE = "wholeCommand";

/** UNSPECIFIED is DISABLED (the Go original, and proto3's zero value) unless `strict`. */
export function parsePolicyMode(mode: PolicyMode, field: string, strict = true): FilterMode {
  const name = policyModeFromWire(mode);
  if (name !== null) return name;
  if (mode !== PolicyMode.UNSPECIFIED) throw invalidArgument(`${field} has unknown policy mode ${String(mode)}`);
  if (!strict) return "disabled";
  throw invalidArgument(`${field} is POLICY_MODE_UNSPECIFIED; send DISABLED, ALLOWLIST, DENYLIST or BLOCK_ALL`);
}

/** UNSPECIFIED is DISABLED unless `strict`, as for policy modes. */
export function parseDnsMode(mode: DnsMode, field: string, strict = true): DnsModeName {
  const name = dnsModeFromWire(mode);
  if (name !== null) return name;
  if (mode !== DnsMode.UNSPECIFIED) throw invalidArgument(`${field} has unknown DNS mode ${String(mode)}`);
  if (!strict) return "disabled";
  throw invalidArgument(`${field} is DNS_MODE_UNSPECIFIED; send DISABLED, ALLOWLIST, DENYLIST or PROXY`);
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
      skipOrThrow(err, strict, skipped);
    }
  });
  return out;
}

function skipOrThrow(err: unknown, strict: boolean, skipped: string[]): void {
  if (strict || !(isNetfenceError(err) && err.code === "INVALID_ARGUMENT") || err.details[NOT_SKIPPABLE] === true) throw err;
  skipped.push(err.message);
}

/**
 * parseEach for CIDR lists, written out: a BulkUpdate carries up to 10k+ of them, and the field
 * name of each entry (`bulk_update.allow_cidrs[i].cidr`) is only built for an entry that is bad.
 */
function parseCidrList(entries: readonly CIDREntry[], field: string, nowMs: number, strict: boolean, skipped: string[], lookup: PrincipalLookup | null): CidrRule[] {
  if (entries.length > MAX_RULES_PER_LIST) throw invalidArgument(`${field} has ${entries.length} entries (max ${MAX_RULES_PER_LIST})`);
  const out: CidrRule[] = [];
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    try {
      if (e.scope !== undefined) out.push(parseCidrEntry(e, `${field}[${i}]`, nowMs, lookup));
      else if (e.ttl === undefined) {
        let cidr: Cidr;
        try {
          cidr = parseCidr(e.cidr);
        } catch {
          cidr = parseCidrField(e.cidr, `${field}[${i}].cidr`); // throws again, naming the field
        }
        out.push({ cidr, expiresAtMs: null });
      } else out.push(parseCidrEntry(e, `${field}[${i}]`, nowMs, null));
    } catch (err) {
      skipOrThrow(err, strict, skipped);
    }
  }
  return out;
}

function parseCidrEntry(entry: CIDREntry, field: string, nowMs: number, lookup: PrincipalLookup | null): CidrRule {
  const scope = parseScopeField(entry.scope, `${field}.scope`, lookup);
  const cidr = parseCidrField(entry.cidr, `${field}.cidr`);
  const ttlMs = entry.ttl === undefined ? 0 : durationToMs(entry.ttl, `${field}.ttl`);
  const expiresAtMs = ttlMs === 0 ? null : nowMs + ttlMs;
  return scope === undefined ? { cidr, expiresAtMs } : { cidr, expiresAtMs, scope };
}

function parseCidrField(text: string, field: string): Cidr {
  return withField(field, () => parseCidr(text));
}

/** `strictMode`: an UNSPECIFIED DNS mode is rejected; `strict`: a bad entry is too (else skipped). */
function parseDnsConfig(dns: DnsConfig, field: string, strictMode: boolean, strict: boolean, skipped: string[], lookup: PrincipalLookup | null): DnsPolicy {
  if (dns.upstreamServers.length > MAX_UPSTREAMS) {
    throw invalidArgument(`${field}.upstream_servers has ${dns.upstreamServers.length} entries (max ${MAX_UPSTREAMS})`);
  }
  return {
    mode: parseDnsMode(dns.mode, `${field}.mode`, strictMode),
    allowDomains: parseEach(dns.allowDomains, `${field}.allow_domains`, strict, skipped, (e, f) => parseDomainEntry(e, f, lookup)),
    denyDomains: parseEach(dns.denyDomains, `${field}.deny_domains`, strict, skipped, parseDenyDomainEntry),
    upstreams: parseEach(dns.upstreamServers, `${field}.upstream_servers`, strict, skipped, parseUpstream),
  };
}

function parseDomainEntry(entry: DomainEntry, field: string, lookup: PrincipalLookup | null): DomainRule {
  const scope = parseScopeField(entry.scope, `${field}.scope`, lookup);
  const parsed = parseDomainField(entry.domain, `${field}.domain`);
  const rule = { domain: parsed.domain, includeSubdomains: entry.includeSubdomains || parsed.wildcard };
  return scope === undefined ? rule : { ...rule, scope };
}

/** A deny-domain rule refuses the name's resolution itself (every query, whoever asks): it takes no scope. */
function parseDenyDomainEntry(entry: DomainEntry, field: string): DomainRule {
  const sc = entry.scope;
  if (sc !== undefined && sc.protocols.length + sc.ports.length + sc.users.length + sc.groups.length > 0) {
    throw new NetfenceError("INVALID_ARGUMENT", `${field}.scope: a deny-domain rule refuses the name's resolution, it cannot be scoped; deny its addresses with a scoped deny CIDR instead`, {
      details: { field, [NOT_SKIPPABLE]: true },
    });
  }
  return parseDomainEntry(entry, field, null);
}

/**
 * A domain, optionally written "*.example.com" — accepted as example.com with subdomains,
 * since that is how operators write it in the README of the original.
 */
function parseDomainField(text: string, field: string): { domain: string; wildcard: boolean } {
  return withField(field, () => parseDomainPattern(text));
}

/** "ip", "ip:port" or "[v6]:port" → canonical "ip:port" / "[v6]:port" (port defaults to 53). */
export function parseUpstream(text: string, field: string): string {
  return withField(field, () => parseHostPort(text, { defaultPort: 53 }).key);
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
