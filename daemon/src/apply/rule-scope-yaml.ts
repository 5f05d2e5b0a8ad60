import type { Node } from "yaml";
import { mergePortRanges, parsePortRange, parseProtocol, PORT_PROTOCOLS, protocolName, type PortRange, type Principal, type RuleScope } from "@netfence/proto/parse";
import { resolvePrincipals, type PrincipalKind } from "../policy/principals.js";
import { sequence, text, type YamlProblems } from "./yaml-walk.js";

/**
 * The scope of one rule of the policy file (`protocols`, `ports`, `users`, `groups`; types in
 * proto/src/parse/rule-scope.ts), validated with positions. Users and groups are resolved on this
 * host (NSS) — each distinct name once per file — and only allowed on cgroup attachments.
 * Protocols and ports go through the shared parser (proto/src/parse/rule-scope-parse.ts) that the
 * control plane and netfence-cp use, so the three inputs accept and refuse the same values.
 */

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

/** The shared parser's value for one YAML item, or null with its error reported at the item's position. */
function located<T>(item: Node, p: YamlProblems, parse: () => T): T | null {
  try {
    return parse();
  } catch (err) {
    p.at(item, err instanceof Error ? err.message : String(err));
    return null;
  }
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
    const n = located(item, p, () => parseProtocol(s, `${what}`));
    if (n !== null) protocols.add(n);
  }
  const ranges: PortRange[] = [];
  const portItems = sequence(fields.get("ports"), `${what} ports`, p);
  for (const item of portItems) {
    const s = text(item, `${what} port`, p);
    if (s === null) continue;
    const r = located(item, p, () => parsePortRange(s.trim(), `${what}`));
    if (r !== null) ranges.push(r);
  }
  if (portItems.length > 0 && protocols.size === 0) {
    protocols.add(6);
    protocols.add(17);
  }
  if (portItems.length > 0) {
    for (const n of protocols) {
      if (!PORT_PROTOCOLS.includes(n)) p.at(fields.get("ports"), `${what}: ports need protocols tcp, udp or sctp only (protocol ${n} has no ports)`);
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
  return { protocols: [...protocols].sort((a, b) => a - b), ports: mergePortRanges(ranges), users, groups };
}

/** "tcp/22,443 users web" — a scope in a diff line or an error message. */
export function scopeText(scope: RuleScope | undefined): string {
  if (scope === undefined) return "";
  const parts: string[] = [];
  if (scope.protocols.length > 0) {
    const ports = scope.ports.map((r) => (r.from === r.to ? `${r.from}` : `${r.from}-${r.to}`)).join(",");
    parts.push(scope.protocols.map(protocolName).join("+") + (ports !== "" ? `/${ports}` : ""));
  }
  const who = (ps: readonly Principal[]): string => ps.map((x) => x.name ?? String(x.id)).join(",");
  if (scope.users.length > 0) parts.push(`users ${who(scope.users)}`);
  if (scope.groups.length > 0) parts.push(`groups ${who(scope.groups)}`);
  return parts.length > 0 ? ` [${parts.join("; ")}]` : "";
}
