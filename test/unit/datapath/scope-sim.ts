/**
 * Test helpers for the scope compiler: a brute-force matcher of the semantics in
 * proto/src/parse/rule-scope.ts, and a simulation of the kernel's lookup over the compiler's output
 * (bpf contract, session 20: address walk longest first, scope LPM per kind, OR, deny wins,
 * fall through when nothing matched). Both read only their own inputs.
 */
import type { FilterEntry } from "../../../daemon/src/policy/compiled.js";
import type { WireEntry } from "../../../daemon/src/datapath/scope-compile.js";
import {
  ENTRY_SCOPE_ANY, ENTRY_SCOPE_GID, ENTRY_SCOPE_UID, OWNER_UNKNOWN, SCOPE_KIND, scopeWireKey, scopeWirePrefixLen,
  type ScopeWireEntry,
} from "../../../daemon/src/datapath/scope-wire.js";

export interface Packet {
  readonly dst: Uint8Array; // IPv4
  readonly proto: number;
  readonly port: number; // 0 for protocols without ports
  readonly uid: number;
  readonly gid: number;
}

export interface Verdict {
  readonly action: "allow" | "deny" | "none";
  /** Rule ids that may be reported (the deciding action's matching live rules). */
  readonly ruleIds: ReadonlySet<number>;
  readonly prefixLen: number | null;
}

const live = (d: number | null, t: number): boolean => d === null || d > t;

function contains(e: FilterEntry, dst: Uint8Array): boolean {
  const { addr, prefixLen } = e.cidr;
  for (let bit = 0; bit < prefixLen; bit++) {
    const m = 0x80 >> (bit % 8);
    if ((addr[bit >> 3]! & m) !== (dst[bit >> 3]! & m)) return false;
  }
  return true;
}

const byLength = <T extends FilterEntry>(entries: readonly T[], dst: Uint8Array): T[] =>
  entries.filter((e) => e.cidr.family === 4 && contains(e, dst)).sort((a, b) => b.cidr.prefixLen - a.cidr.prefixLen);

/** The truth: longest prefix with a live rule matching the packet; deny wins at equal length. */
export function bruteForce(entries: readonly FilterEntry[], p: Packet, t: number): Verdict {
  for (const e of byLength(entries, p.dst)) {
    const hits: Array<{ allow: boolean; deny: boolean; ruleId: number }> = [];
    if ((e.allow || e.deny) && live(e.expiresAtMs, t)) hits.push({ allow: e.allow, deny: e.deny, ruleId: e.ruleId ?? 0 });
    for (const r of e.scoped ?? []) {
      if (!live(r.expiresAtMs, t)) continue;
      const s = r.scope;
      const protos = s.protocols.length > 0 ? s.protocols : s.ports.length > 0 ? [6, 17] : null;
      if (protos !== null && !protos.includes(p.proto)) continue;
      if (s.ports.length > 0 && !s.ports.some((pr) => pr.from <= p.port && p.port <= pr.to)) continue;
      const owners = s.users.length > 0 || s.groups.length > 0;
      // An unknown gid: a group deny applies (closed), a group allow does not.
      const groupHit = p.gid === OWNER_UNKNOWN ? r.deny && s.groups.length > 0 : s.groups.some((g) => g.id === p.gid);
      if (owners && !s.users.some((u) => u.id === p.uid) && !groupHit) continue;
      hits.push(r);
    }
    const deny = hits.filter((h) => h.deny);
    const allow = hits.filter((h) => h.allow);
    if (deny.length > 0) return { action: "deny", ruleIds: new Set(deny.map((h) => h.ruleId)), prefixLen: e.cidr.prefixLen };
    if (allow.length > 0) return { action: "allow", ruleIds: new Set(allow.map((h) => h.ruleId)), prefixLen: e.cidr.prefixLen };
  }
  return { action: "none", ruleIds: new Set(), prefixLen: null };
}

/** Longest-prefix match over the scope entries' wire keys (10 bytes after the generation byte). */
export function lpmLookup(table: readonly ScopeWireEntry[], key: Uint8Array): ScopeWireEntry | null {
  let best: ScopeWireEntry | null = null;
  let bestLen = -1;
  for (const e of table) {
    const len = scopeWirePrefixLen(e);
    if (len <= bestLen) continue;
    const k = scopeWireKey(e);
    let ok = true;
    for (let bit = 0; bit < len && ok; bit++) {
      const m = 0x80 >> (bit % 8);
      if ((k[bit >> 3]! & m) !== (key[bit >> 3]! & m)) ok = false;
    }
    if (ok) {
      best = e;
      bestLen = len;
    }
  }
  return best;
}

function lookupKey(kind: number, scope: number, principal: number, proto: number, port: number): Uint8Array {
  const k = new Uint8Array(10);
  const v = new DataView(k.buffer);
  v.setUint8(0, kind);
  v.setUint16(1, scope, true);
  v.setUint32(3, principal >>> 0, true);
  v.setUint8(7, proto);
  v.setUint16(8, port, false);
  return k;
}

/** The kernel's decision over the compiler's output (the LPM walk's hop bound is not modelled). */
export function kernelSim(entries: readonly WireEntry[], table: readonly ScopeWireEntry[], p: Packet, t: number): Verdict {
  for (const e of byLength(entries, p.dst)) {
    if (!live(e.expiresAtMs, t)) continue;
    const parts: Array<{ allow: boolean; deny: boolean; ruleId: number }> = [];
    if (e.allow || e.deny) parts.push({ allow: e.allow, deny: e.deny, ruleId: e.ruleId ?? 0 });
    const id = e.scopeId ?? 0;
    const kinds = e.scopeKinds ?? 0;
    if (id !== 0) {
      const asks: Array<[number, number]> = [];
      if (kinds & ENTRY_SCOPE_ANY) asks.push([SCOPE_KIND.ANY, 0]);
      if (kinds & ENTRY_SCOPE_UID) asks.push([SCOPE_KIND.UID, p.uid]);
      if (kinds & ENTRY_SCOPE_GID) asks.push([SCOPE_KIND.GID, p.gid]); // unknown: principal OWNER_UNKNOWN
      for (const [kind, principal] of asks) {
        const hit = lpmLookup(table, lookupKey(kind, id, principal, p.proto, p.port));
        if (hit && live(hit.expiresAtMs, t)) parts.push(hit);
      }
    }
    const deny = parts.find((h) => h.deny);
    if (deny) return { action: "deny", ruleIds: new Set([deny.ruleId]), prefixLen: e.cidr.prefixLen };
    const allow = parts.find((h) => h.allow);
    if (allow) return { action: "allow", ruleIds: new Set([allow.ruleId]), prefixLen: e.cidr.prefixLen };
  }
  return { action: "none", ruleIds: new Set(), prefixLen: null };
}

/** Distinct (prefixlen, key) per table: an LPM trie keeps one value per key. */
export function duplicateKeys(table: readonly ScopeWireEntry[]): string[] {
  const seen = new Set<string>();
  const dups: string[] = [];
  for (const e of table) {
    const k = `${scopeWirePrefixLen(e)}:${Buffer.from(scopeWireKey(e)).toString("hex")}`;
    if (seen.has(k)) dups.push(k);
    seen.add(k);
  }
  return dups;
}
