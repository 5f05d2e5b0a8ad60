/**
 * The inverse of the scope compiler (scope-compile.ts, scope-blocks.ts) for DUMP (session 21): an
 * attachment's scope table, read back from the kernel, becomes each address entry's scoped rules
 * again (FilterEntry.scoped, the shape the compiler takes), so that an orphan adopted from its pins
 * (attachments/orphan.ts) and compiled again decides every packet as its kernel maps did.
 *
 * The kernel's answer for one (scope set, kind, principal) is the LONGEST live block matching
 * (protocol, port); the rules' answer is the OR of every matching rule, deny winning. Each live
 * block becomes one rule over its own (protocol, port block); both answers agree when no block lies
 * under a live deny block without denying itself — which the compiler guarantees (a longer block
 * carries the union of the rules covering it). What cannot be rebuilt exactly is a PROBLEM, never a
 * guess: the adoption is refused (fail closed) rather than widened. Problems:
 *   - an expired (or flagless) block under a live shorter one: the kernel answers "no match" there
 *     (its deny expired and the daemon that would have re-pushed the set is gone); the rules would
 *     answer the shorter block's allow or deny;
 *   - an allow block under a live deny block (the kernel allows, the rules would deny);
 *   - a port block holding port 0 (rules have ports 1..65535; packets without ports look up 0);
 *   - a key the compiler never writes (prefix not 56 or 64..80).
 * Blocks the kernel never looks up are left out (exact): kinds the address entry does not name,
 * ANY with a principal, an unknown owner, owner kinds on an interface attachment (the TC program
 * never knows the owner), port blocks of a protocol without ports that do not hold port 0.
 * Adjacent port blocks of one answer merge back into ranges, protocols and principals with equal
 * answers into one rule.
 */
import { formatCidr, mergePortRanges, MAX_SCOPE_ITEMS, PORT_PROTOCOLS, type PortRange, type RuleScope } from "@netfence/proto/parse";
import type { FilterEntry, ScopedRuleEntry } from "../policy/compiled.js";
import {
  ENTRY_SCOPE_ANY, ENTRY_SCOPE_GID, ENTRY_SCOPE_UID, OWNER_UNKNOWN, SCOPE_KEY_BYTES, SCOPE_KIND, SCOPE_WIRE_PREFIX_ANY,
  type ScopeKind, type ScopeWireEntry,
} from "./scope-wire.js";
import { LAYOUT } from "./wire-format.js";

/** An address entry of a DUMP with the scope set the kernel entry names (0 = none) and its kinds. */
export interface DumpedAddress {
  readonly entry: FilterEntry;
  readonly scopeId: number;
  readonly scopeKinds: number;
}

export interface ScopeRebuild {
  /** The address entries, each with its rebuilt scoped rules (absent when it has none). */
  readonly entries: FilterEntry[];
  /** Why some scope content cannot be rebuilt exactly (the first reason); null when all could. */
  readonly problem: string | null;
}

/** A scope-table wire record (nf_wire_entry, family NF_WIRE_SCOPE) back to its fields; a string: why not. */
export function decodeScopeWireEntry(b: Buffer, off: number): ScopeWireEntry | string {
  const W = LAYOUT.nf_wire_entry;
  const plen = b.readUInt8(off + W.prefixlen);
  const key = off + W.addr;
  const kind = b.readUInt8(key);
  if (kind > SCOPE_KIND.GID) return `scope entry of kind ${kind}`;
  if (plen !== SCOPE_WIRE_PREFIX_ANY && (plen < SCOPE_WIRE_PREFIX_ANY + 8 || plen > SCOPE_KEY_BYTES * 8)) return `scope entry with a key of ${plen} bits`;
  const flags = b.readUInt8(off + W.flags);
  const ms = Number(b.readBigUInt64LE(off + W.expires_ms));
  const anyProto = plen === SCOPE_WIRE_PREFIX_ANY;
  const portBits = anyProto ? 0 : plen - SCOPE_WIRE_PREFIX_ANY - 8;
  const mask = portBits === 0 ? 0 : (0xffff << (16 - portBits)) & 0xffff;
  return {
    scope: b.readUInt16LE(key + 1),
    kind: kind as ScopeKind,
    principal: b.readUInt32LE(key + 3),
    proto: anyProto ? null : b.readUInt8(key + 7),
    port: anyProto ? 0 : b.readUInt16BE(key + 8) & mask,
    portBits,
    deny: (flags & 2) !== 0,
    allow: (flags & 1) !== 0 && (flags & 2) === 0, // deny wins inside one entry too
    ruleId: b.readUInt32LE(off + W.rule_id),
    expiresAtMs: ms === 0 ? null : ms,
  };
}

/** A rule of one table before principals are attached. */
interface TableRule {
  readonly protocols: number[];
  readonly ports: PortRange[];
  readonly allow: boolean;
  readonly deny: boolean;
  readonly ruleId: number;
  readonly expiresAtMs: number | null;
}

const blockKey = (proto: number | null, portBits: number, port: number): string => `${proto ?? -1}/${portBits}/${port}`;
const maskOf = (bits: number): number => (bits === 0 ? 0 : (0xffff << (16 - bits)) & 0xffff);
const describe = (b: ScopeWireEntry): string =>
  b.proto === null ? "any protocol" : b.portBits === 0 ? `protocol ${b.proto}` : `protocol ${b.proto} ports ${b.port}-${b.port + 2 ** (16 - b.portBits) - 1}`;

/** The rules of one (scope set, kind, principal) table, or why they cannot be rebuilt exactly. */
function tableRules(blocks: readonly ScopeWireEntry[], nowMs: number): TableRule[] | string {
  const dead = (b: ScopeWireEntry): boolean => (!b.allow && !b.deny) || (b.expiresAtMs !== null && b.expiresAtMs <= nowMs);
  const byKey = new Map<string, ScopeWireEntry>();
  for (const b of blocks) byKey.set(blockKey(b.proto, b.portBits, b.port), b);
  const liveAncestors = (b: ScopeWireEntry): ScopeWireEntry[] => {
    const out: ScopeWireEntry[] = [];
    const any = b.proto === null ? undefined : byKey.get(blockKey(null, 0, 0));
    if (any !== undefined && !dead(any)) out.push(any);
    if (b.proto !== null) {
      for (let k = 0; k < b.portBits; k++) {
        const a = byKey.get(blockKey(b.proto, k, b.port & maskOf(k)));
        if (a !== undefined && !dead(a)) out.push(a);
      }
    }
    return out;
  };
  const live: ScopeWireEntry[] = [];
  for (const b of blocks) {
    const above = liveAncestors(b);
    if (dead(b)) {
      if (above.length > 0) return `an expired or empty scoped block (${describe(b)}) hides a live shorter one: the kernel answers "no match" there until its policy is written again`;
      continue;
    }
    if (!b.deny && above.some((a) => a.deny)) return `a scoped allow (${describe(b)}) lies under a scoped deny`;
    if (b.proto !== null && b.portBits > 0) {
      if (b.port === 0) return `a scoped block holds port 0 (${describe(b)})`;
      if (!PORT_PROTOCOLS.includes(b.proto)) continue; // looked up with port 0 only: never matches
    }
    live.push(b);
  }
  // Per (protocol, answer): port blocks back to merged ranges (a whole-protocol block covers all).
  const byAnswer = new Map<string, { proto: number | null; b: ScopeWireEntry; ranges: PortRange[]; all: boolean }>();
  for (const b of live) {
    const k = `${b.proto ?? -1}|${b.allow ? "a" : "d"}|${b.ruleId}|${b.expiresAtMs ?? "-"}`;
    let g = byAnswer.get(k);
    if (g === undefined) byAnswer.set(k, (g = { proto: b.proto, b, ranges: [], all: false }));
    if (b.proto === null || b.portBits === 0) g.all = true;
    else g.ranges.push({ from: b.port, to: b.port + 2 ** (16 - b.portBits) - 1 });
  }
  // Then protocols with the same ports and answer share one rule.
  const byPorts = new Map<string, TableRule & { protocols: number[] }>();
  for (const g of byAnswer.values()) {
    const ports = g.all ? [] : mergePortRanges(g.ranges);
    const k = `${g.proto === null ? "*" : ""}|${g.b.allow ? "a" : "d"}|${g.b.ruleId}|${g.b.expiresAtMs ?? "-"}|${ports.map((r) => `${r.from}-${r.to}`).join(",")}`;
    const r = byPorts.get(k);
    if (r !== undefined && g.proto !== null) r.protocols.push(g.proto);
    else byPorts.set(k, { protocols: g.proto === null ? [] : [g.proto], ports, allow: g.b.allow, deny: g.b.deny, ruleId: g.b.ruleId, expiresAtMs: g.b.expiresAtMs });
  }
  return [...byPorts.values()].map((r) => ({ ...r, protocols: r.protocols.sort((a, b) => a - b) }));
}

const KIND_FLAG: Record<ScopeKind, number> = { [SCOPE_KIND.ANY]: ENTRY_SCOPE_ANY, [SCOPE_KIND.UID]: ENTRY_SCOPE_UID, [SCOPE_KIND.GID]: ENTRY_SCOPE_GID };

function chunks<T>(list: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out.length > 0 ? out : [[]];
}

/**
 * The scoped rules of one scope set as the kinds `kinds` see it (owner kinds only where the owner is
 * known: cgroup attachments), or why they cannot be rebuilt exactly.
 */
function setRules(tables: ReadonlyMap<number, ScopeWireEntry[]>, kinds: number, owners: boolean, nowMs: number): ScopedRuleEntry[] | string {
  const merged = new Map<string, { r: TableRule; kind: ScopeKind; principals: number[] }>();
  for (const [k, blocks] of [...tables].sort((a, b) => a[0] - b[0])) {
    const kind = Math.floor(k / 0x100000000) as ScopeKind;
    const principal = k % 0x100000000;
    if ((kinds & KIND_FLAG[kind]) === 0) continue; // never looked up
    // OWNER_UNKNOWN: the deny part of the group rules (for sockets without a gid stamp), derived from
    // the other GID tables: the compiler writes it again from the rules rebuilt here.
    if (kind === SCOPE_KIND.ANY ? principal !== 0 : !owners || principal === OWNER_UNKNOWN) continue;
    const rules = tableRules(blocks, nowMs);
    if (typeof rules === "string") return rules;
    for (const r of rules) {
      const key = `${kind}|${r.protocols.join(",")}|${r.ports.map((p) => `${p.from}-${p.to}`).join(",")}|${r.allow ? "a" : "d"}|${r.ruleId}|${r.expiresAtMs ?? "-"}`;
      const m = merged.get(key);
      if (m !== undefined) m.principals.push(principal);
      else merged.set(key, { r, kind, principals: [principal] });
    }
  }
  const out: ScopedRuleEntry[] = [];
  for (const { r, kind, principals } of merged.values()) {
    const ids = principals.sort((a, b) => a - b).map((id) => ({ id, name: null }));
    // The shared parser's limit per list (a stored policy is parsed again): long lists split, same answers.
    for (const ports of chunks(r.ports, MAX_SCOPE_ITEMS)) {
      for (const who of kind === SCOPE_KIND.ANY ? [[]] : chunks(ids, MAX_SCOPE_ITEMS)) {
        const scope: RuleScope = {
          protocols: r.protocols, ports,
          users: kind === SCOPE_KIND.UID ? who : [], groups: kind === SCOPE_KIND.GID ? who : [],
        };
        out.push({ scope, allow: r.allow, deny: r.deny, ruleId: r.ruleId, expiresAtMs: r.expiresAtMs });
      }
    }
  }
  return out;
}

/**
 * Each address entry with the scoped rules its scope set holds in `table` (the active generation's
 * scope entries, expired ones included). `owners`: the attachment's programs know the socket owner
 * (cgroup). A scoped rule never outlives its address entry (the kernel entry dies first).
 */
export function rebuildScoped(addresses: readonly DumpedAddress[], table: readonly ScopeWireEntry[], owners: boolean, nowMs: number): ScopeRebuild {
  const sets = new Map<number, Map<number, ScopeWireEntry[]>>();
  for (const b of table) {
    let set = sets.get(b.scope);
    if (set === undefined) sets.set(b.scope, (set = new Map()));
    const k = b.kind * 0x100000000 + b.principal;
    const t = set.get(k);
    if (t === undefined) set.set(k, [b]);
    else t.push(b);
  }
  const cache = new Map<string, ScopedRuleEntry[] | string>(); // learned addresses share their rule's set
  let problem: string | null = null;
  const entries = addresses.map(({ entry, scopeId, scopeKinds }) => {
    if (scopeId === 0) return entry;
    const ck = `${scopeId}:${scopeKinds}`;
    let rules = cache.get(ck);
    if (rules === undefined) cache.set(ck, (rules = setRules(sets.get(scopeId) ?? new Map(), scopeKinds, owners, nowMs)));
    if (typeof rules === "string") {
      problem ??= `${formatCidr(entry.cidr)}: ${rules}`;
      return entry;
    }
    if (rules.length === 0) return entry;
    const until = entry.expiresAtMs;
    const scoped = until === null ? rules : rules.map((r) => (r.expiresAtMs === null || r.expiresAtMs > until ? { ...r, expiresAtMs: until } : r));
    return { ...entry, scoped };
  });
  return { entries, problem };
}
