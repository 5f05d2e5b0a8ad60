import { cidrContains, parseCidr, type Cidr, type RuleScope } from "@netfence/proto/parse";
import type { FilterEntry } from "../../../daemon/src/policy/compiled.js";

/**
 * Test-only reference of the scoped-rule semantics (proto/src/parse/rule-scope.ts header) and an
 * evaluator of compiled FilterEntry lists as the kernel contract reads them (docs/operator-guide.md
 * "Scoped rules"): the two must agree for every packet.
 */

export interface Packet {
  readonly addr: Cidr; // a /32
  readonly proto: number;
  readonly port: number; // 0 for protocols without ports
  readonly uid: number;
  readonly gid: number;
}

export interface RefRule {
  readonly cidr: Cidr;
  readonly deny: boolean;
  readonly scope?: RuleScope;
  readonly expiresAtMs: number | null;
}

export function scopeMatches(scope: RuleScope | undefined, p: Packet): boolean {
  if (scope === undefined) return true;
  if (scope.protocols.length > 0 && !scope.protocols.includes(p.proto)) return false;
  if (scope.ports.length > 0 && !scope.ports.some((r) => p.port >= r.from && p.port <= r.to)) return false;
  if (scope.users.length === 0 && scope.groups.length === 0) return true;
  return scope.users.some((u) => u.id === p.uid) || scope.groups.some((g) => g.id === p.gid);
}

const live = (deadline: number | null, nowMs: number): boolean => deadline === null || deadline > nowMs;

/** The deciding rule: longest prefix among the live rules matching the packet; deny wins at equal prefix. */
export function referenceVerdict(rules: readonly RefRule[], p: Packet, nowMs: number): "allow" | "deny" | "none" {
  let best = -1;
  let deny = false;
  for (const r of rules) {
    if (!live(r.expiresAtMs, nowMs) || !cidrContains(r.cidr, p.addr) || !scopeMatches(r.scope, p)) continue;
    if (r.cidr.prefixLen > best) {
      best = r.cidr.prefixLen;
      deny = r.deny;
    } else if (r.cidr.prefixLen === best) deny ||= r.deny;
  }
  return best < 0 ? "none" : deny ? "deny" : "allow";
}

/** The kernel contract: per prefix from the longest, the live entry's unscoped flags OR its matching scoped rules'; none = next prefix. */
export function entriesVerdict(entries: Iterable<FilterEntry>, p: Packet, nowMs: number): "allow" | "deny" | "none" {
  const sorted = [...entries].filter((e) => cidrContains(e.cidr, p.addr)).sort((a, b) => b.cidr.prefixLen - a.cidr.prefixLen);
  for (const e of sorted) {
    if (!live(e.expiresAtMs, nowMs)) continue;
    let allow = e.allow;
    let deny = e.deny;
    for (const s of e.scoped ?? []) {
      if (!live(s.expiresAtMs, nowMs) || !scopeMatches(s.scope, p)) continue;
      allow ||= s.allow;
      deny ||= s.deny;
    }
    if (deny) return "deny";
    if (allow) return "allow";
  }
  return "none";
}

export const packetAt = (addr: string, proto: number, port: number, uid = 1000, gid = 1000): Packet => ({ addr: parseCidr(addr), proto, port, uid, gid });
