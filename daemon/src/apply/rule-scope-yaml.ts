import type { Node } from "yaml";
import type { PortRange, Principal, RuleScope } from "@netfence/proto/parse";
import { resolvePrincipals, type PrincipalKind } from "../policy/principals.js";
import { sequence, text, type YamlProblems } from "./yaml-walk.js";

/**
 * The scope of one rule of the policy file (`protocols`, `ports`, `users`, `groups`; types in
 * proto/src/parse/rule-scope.ts), validated with positions. Users and groups are resolved on this
 * host (NSS) — each distinct name once per file — and only allowed on cgroup attachments.
 */

const PROTOCOLS: Readonly<Record<string, number>> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, sctp: 132 };
const PORTED = new Set([6, 17, 132]);

/** Name → principal lookups shared by one file's rules (one getent per distinct name). */
export class PrincipalCache {
  private readonly cache = new Map<string, Promise<Principal | Error>>();

  resolve(kind: PrincipalKind, name: string): Promise<Principal | Error> {
    const key = `${kind}:${name}`;
    let hit = this.cache.get(key);
    if (hit === undefined) {
      hit = resolvePrincipals(kind, [name]).then(
        (ps) => ps[0] ?? new Error(`unknown ${kind} ${name}`),
        (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
      );
      this.cache.set(key, hit);
    }
    return hit;
  }
}

function parsePort(s: string): number | null {
  return /^\d{1,5}$/.test(s) && Number(s) >= 1 && Number(s) <= 65535 ? Number(s) : null;
}

/** Sorted, merged ranges (adjacent and overlapping ones joined). */
function mergeRanges(ranges: PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a.from - b.from);
  const out: PortRange[] = [];
  for (const r of sorted) {
    const last = out.at(-1);
    if (last !== undefined && r.from <= last.to + 1) out[out.length - 1] = { from: last.from, to: Math.max(last.to, r.to) };
    else out.push(r);
  }
  return out;
}

/** A rule's scope fields; undefined when it has none. `ownerAllowed`: the attachment is a cgroup one. */
export async function parseRuleScope(
  fields: Map<string, Node | null>, what: string, ownerAllowed: boolean, principals: PrincipalCache, p: YamlProblems,
): Promise<RuleScope | undefined> {
  if (!["protocols", "ports", "users", "groups"].some((k) => fields.has(k))) return undefined;
  const protocols = new Set<number>();
  for (const item of sequence(fields.get("protocols"), `${what} protocols`, p)) {
    const s = text(item, `${what} protocol`, p);
    if (s === null) continue;
    const n = PROTOCOLS[s.toLowerCase()] ?? (/^\d{1,3}$/.test(s) && Number(s) >= 1 && Number(s) <= 255 ? Number(s) : undefined);
    if (n === undefined) p.at(item, `${what}: protocol "${s.slice(0, 20)}" is not one of ${Object.keys(PROTOCOLS).join(", ")} or a number 1..255`);
    else protocols.add(n);
  }
  const ranges: PortRange[] = [];
  const portItems = sequence(fields.get("ports"), `${what} ports`, p);
  for (const item of portItems) {
    const s = text(item, `${what} port`, p);
    if (s === null) continue;
    const m = /^(\d+)\s*-\s*(\d+)$/.exec(s.trim());
    const from = parsePort(m ? m[1]! : s.trim());
    const to = m ? parsePort(m[2]!) : from;
    if (from === null || to === null || from > to) p.at(item, `${what}: port "${s.slice(0, 20)}" is not a port 1..65535 or a range "from-to"`);
    else ranges.push({ from, to });
  }
  if (portItems.length > 0 && protocols.size === 0) {
    protocols.add(6);
    protocols.add(17);
  }
  if (portItems.length > 0) {
    for (const n of protocols) {
      if (!PORTED.has(n)) p.at(fields.get("ports"), `${what}: ports need protocols tcp, udp or sctp only (protocol ${n} has no ports)`);
    }
  }
  const owners = async (kind: PrincipalKind, key: "users" | "groups"): Promise<Principal[]> => {
    const items = sequence(fields.get(key), `${what} ${key}`, p);
    if (items.length > 0 && !ownerAllowed) {
      p.at(fields.get(key), `${what}: ${key} are only enforceable on cgroup attachments (an interface attachment sees no socket owner)`);
      return [];
    }
    const out = new Map<number, Principal>();
    for (const item of items) {
      const s = text(item, `${what} ${kind}`, p);
      if (s === null) continue;
      const r = await principals.resolve(kind, s.trim());
      if (r instanceof Error) p.at(item, `${what}: ${r.message}`);
      else out.set(r.id, r);
    }
    return [...out.values()].sort((a, b) => a.id - b.id);
  };
  const users = await owners("user", "users");
  const groups = await owners("group", "groups");
  return { protocols: [...protocols].sort((a, b) => a - b), ports: mergeRanges(ranges), users, groups };
}

/** "tcp/22,443 users web" — a scope in a diff line or an error message. */
export function scopeText(scope: RuleScope | undefined): string {
  if (scope === undefined) return "";
  const names = Object.fromEntries(Object.entries(PROTOCOLS).map(([k, v]) => [v, k]));
  const parts: string[] = [];
  if (scope.protocols.length > 0) {
    const ports = scope.ports.map((r) => (r.from === r.to ? `${r.from}` : `${r.from}-${r.to}`)).join(",");
    parts.push(scope.protocols.map((n) => names[n] ?? String(n)).join("+") + (ports !== "" ? `/${ports}` : ""));
  }
  const who = (ps: readonly Principal[]): string => ps.map((x) => x.name ?? String(x.id)).join(",");
  if (scope.users.length > 0) parts.push(`users ${who(scope.users)}`);
  if (scope.groups.length > 0) parts.push(`groups ${who(scope.groups)}`);
  return parts.length > 0 ? ` [${parts.join("; ")}]` : "";
}
