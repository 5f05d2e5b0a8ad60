import { invalidArgument } from "../errors.js";
import type { PortRange, Principal, RuleScope } from "./rule-scope.js";

/**
 * The one parser of rule scopes (rule-scope.ts) as people and control planes write them: the
 * control-plane stream (RuleScope message: strings and PortRange messages), netfence-cp's YAML and
 * the standalone policy file (numbers, "8000-8100" strings, names). Shared by the daemon, the SDK,
 * netfence-cp and the CLI so that every edge accepts and refuses the same things.
 *
 *   protocols  "tcp" "udp" "icmp" "icmpv6" (alias "ipv6-icmp") "sctp" or a number 1..255
 *   ports      443, "443", "8000-8100", {from, to} (to 0 = from); 1..65535; merged into disjoint ranges;
 *              only with tcp, udp, sctp — ports without protocols mean tcp and udp
 *   users      names or decimal uids; groups: names or decimal gids (0..4294967294); names are
 *              resolved by the caller's `lookup` (the daemon: NSS at apply time), unknown = an error
 *
 * Everything empty (or absent) = unscoped: `parseRuleScope` returns undefined, so a rule written
 * without a scope and one with an empty scope are the same rule.
 */

export type PortInput = number | string | { readonly from: number; readonly to?: number };

export interface RuleScopeInput {
  readonly protocols?: readonly (string | number)[];
  readonly ports?: readonly PortInput[];
  readonly users?: readonly (string | number)[];
  readonly groups?: readonly (string | number)[];
}

export type PrincipalKind = "user" | "group";

/** Resolves a user or group NAME (numbers never reach it); null = unknown. */
export type PrincipalLookup = (kind: PrincipalKind, name: string) => number | null;

export const PROTOCOL_NUMBERS: Readonly<Record<string, number>> = { icmp: 1, tcp: 6, udp: 17, icmpv6: 58, "ipv6-icmp": 58, sctp: 132 };
const PROTOCOL_NAMES: Readonly<Record<number, string>> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp" };
/** Protocols with destination ports. */
export const PORT_PROTOCOLS: readonly number[] = [6, 17, 132];
/** The largest id a rule may name: 2^32-2 (4294967295 is (uid_t)-1, "no owner"). */
export const MAX_PRINCIPAL_ID = 0xfffffffe;
/** Bounds so a hostile control plane or file cannot make one rule arbitrarily large. */
export const MAX_SCOPE_ITEMS = 1024;

const NUMBER = /^\d{1,10}$/;
const PRINCIPAL_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/;

/** A protocol name or number → IP protocol number. */
export function parseProtocol(value: string | number, field = "protocol"): number {
  const text = String(value).trim().toLowerCase();
  const named = PROTOCOL_NUMBERS[text];
  if (named !== undefined) return named;
  if (/^\d{1,3}$/.test(text)) {
    const n = Number(text);
    if (n >= 1 && n <= 255) return n;
  }
  throw invalidArgument(`${field}: "${clip(String(value))}" is not a protocol (tcp, udp, icmp, icmpv6, sctp or a number 1..255)`);
}

export function protocolName(proto: number): string {
  return PROTOCOL_NAMES[proto] ?? String(proto);
}

function parsePort(text: string, field: string): number {
  const t = text.trim();
  if (!/^\d{1,5}$/.test(t) || Number(t) < 1 || Number(t) > 65535) throw invalidArgument(`${field}: "${clip(text)}" is not a port (1..65535)`);
  return Number(t);
}

/** One port or range: 443, "443", "8000-8100", {from, to}. */
export function parsePortRange(value: PortInput, field = "port"): PortRange {
  if (typeof value === "number") return { from: parsePort(String(value), field), to: parsePort(String(value), field) };
  if (typeof value === "string") {
    const dash = value.indexOf("-");
    if (dash === -1) {
      const p = parsePort(value, field);
      return { from: p, to: p };
    }
    return ordered(parsePort(value.slice(0, dash), field), parsePort(value.slice(dash + 1), field), field);
  }
  if (typeof value === "object" && value !== null && typeof value.from === "number") {
    const from = parsePort(String(value.from), `${field}.from`);
    const to = value.to === undefined || value.to === 0 ? from : parsePort(String(value.to), `${field}.to`);
    return ordered(from, to, field);
  }
  throw invalidArgument(`${field}: not a port or port range (443, "8000-8100")`);
}

function ordered(from: number, to: number, field: string): PortRange {
  if (from > to) throw invalidArgument(`${field}: port range ${from}-${to} ends before it starts`);
  return { from, to };
}

/** Ranges sorted by start, overlapping and adjacent ones merged. */
export function mergePortRanges(ranges: readonly PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a.from - b.from || a.to - b.to);
  const out: { from: number; to: number }[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && r.from <= last.to + 1) last.to = Math.max(last.to, r.to);
    else out.push({ from: r.from, to: r.to });
  }
  return out;
}

/** The names (not numbers) a scope input mentions, per kind: what a caller must look up before parsing. */
export function principalNamesOf(input: RuleScopeInput | undefined): { users: string[]; groups: string[] } {
  const names = (items: readonly (string | number)[] | undefined): string[] =>
    (items ?? []).map((i) => String(i).trim()).filter((t) => !NUMBER.test(t) && PRINCIPAL_NAME.test(t));
  return { users: names(input?.users), groups: names(input?.groups) };
}

function parsePrincipals(kind: PrincipalKind, items: readonly (string | number)[], field: string, lookup: PrincipalLookup | null): Principal[] {
  const seen = new Map<number, Principal>();
  for (const item of items) {
    const text = String(item).trim();
    let p: Principal;
    if (NUMBER.test(text)) {
      const id = Number(text);
      if (id > MAX_PRINCIPAL_ID) throw invalidArgument(`${field}: ${kind} id ${text} is out of range (0..${MAX_PRINCIPAL_ID})`);
      p = { id, name: null };
    } else {
      if (!PRINCIPAL_NAME.test(text)) throw invalidArgument(`${field}: "${clip(text)}" is not a ${kind} name or number`);
      const id = lookup === null ? null : lookup(kind, text);
      if (id === null) throw invalidArgument(`${field}: unknown ${kind} "${text}"`);
      p = { id, name: text };
    }
    if (!seen.has(p.id)) seen.set(p.id, p);
  }
  return [...seen.values()].sort((a, b) => a.id - b.id);
}

/**
 * Parses a scope; undefined when it limits nothing. `field` prefixes every error
 * ("bulk_update.allow_cidrs[3].scope"); `lookup` resolves user and group names (null: names are an error).
 */
export function parseRuleScope(input: RuleScopeInput | undefined, field = "scope", lookup: PrincipalLookup | null = null): RuleScope | undefined {
  if (input === undefined) return undefined;
  for (const key of ["protocols", "ports", "users", "groups"] as const) {
    const list = input[key];
    if (list !== undefined && !Array.isArray(list)) throw invalidArgument(`${field}.${key} must be a list`);
    if (list !== undefined && list.length > MAX_SCOPE_ITEMS) throw invalidArgument(`${field}.${key} has ${list.length} entries (max ${MAX_SCOPE_ITEMS})`);
  }
  let protocols = [...new Set((input.protocols ?? []).map((p, i) => parseProtocol(p, `${field}.protocols[${i}]`)))].sort((a, b) => a - b);
  const ports = mergePortRanges((input.ports ?? []).map((p, i) => parsePortRange(p, `${field}.ports[${i}]`)));
  if (ports.length > 0) {
    if (protocols.length === 0) protocols = [6, 17];
    const portless = protocols.filter((p) => !PORT_PROTOCOLS.includes(p));
    if (portless.length > 0) {
      throw invalidArgument(`${field}: ports need tcp, udp or sctp; ${portless.map(protocolName).join(", ")} has no ports (write it in a rule of its own)`);
    }
  }
  const users = parsePrincipals("user", input.users ?? [], `${field}.users`, lookup);
  const groups = parsePrincipals("group", input.groups ?? [], `${field}.groups`, lookup);
  if (protocols.length === 0 && ports.length === 0 && users.length === 0 && groups.length === 0) return undefined;
  return { protocols, ports, users, groups };
}

/** Human text of a scope for messages and listings: "tcp,udp/443,8000-8100 users=web(33) groups=100". */
export function formatRuleScope(scope: RuleScope | undefined): string {
  if (scope === undefined) return "any";
  const parts: string[] = [];
  const protos = scope.protocols.map(protocolName).join(",");
  const ports = scope.ports.map((r) => (r.from === r.to ? `${r.from}` : `${r.from}-${r.to}`)).join(",");
  if (protos !== "" || ports !== "") parts.push(ports === "" ? protos : `${protos}/${ports}`);
  const who = (ps: readonly Principal[]): string => ps.map((p) => (p.name === null ? `${p.id}` : `${p.name}(${p.id})`)).join(",");
  if (scope.users.length > 0) parts.push(`users=${who(scope.users)}`);
  if (scope.groups.length > 0) parts.push(`groups=${who(scope.groups)}`);
  return parts.length === 0 ? "any" : parts.join(" ");
}

/** The wire/YAML shape of a parsed scope (names where known, else numbers). */
export function ruleScopeToInput(scope: RuleScope): { protocols: string[]; ports: { from: number; to: number }[]; users: string[]; groups: string[] } {
  return {
    protocols: scope.protocols.map(protocolName),
    ports: scope.ports.map((r) => ({ from: r.from, to: r.to })),
    users: scope.users.map((p) => p.name ?? String(p.id)),
    groups: scope.groups.map((p) => p.name ?? String(p.id)),
  };
}

function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}
