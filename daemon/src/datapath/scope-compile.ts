/**
 * The scope compiler (issue 15): the scoped rules of a generation's FilterEntries become
 *   (a) per address entry a scope-set id (1..65535; 0 = no scoped rule) and the kinds to look up
 *       (ENTRY_SCOPE_ANY / _UID / _GID), and
 *   (b) the scope-table entries of the kernel contract: per (scope id, kind, principal) a flattened
 *       set of LPM blocks over (protocol, destination port) (scope-blocks.ts), so one lookup per kind
 *       gives the whole answer; the kernel ORs the kinds, deny wins, and no answer means "this prefix
 *       does not match the packet": the walk goes on to the next shorter prefix.
 * Scope sets are deduplicated by content within a generation: equal scoped-rule sets (same scopes,
 * actions, rule ids and effective deadlines) share one id and one copy of their blocks — every
 * address a domain rule learned shares its rule's set. scope-registry.ts keeps the ids per generation.
 *
 * Normalisation: "ports without protocols" = tcp and udp; a rule with users and groups is in both
 * the UID and the GID tables (uid in users OR gid in groups); a rule with neither is in ANY. A deny
 * rule with groups is also in the GID table of principal OWNER_UNKNOWN (0xffffffff, never a real gid:
 * MAX_PRINCIPAL): a socket created before the attach has no gid stamp, and any group deny applies to
 * it — fail closed — while no group allow does.
 *
 * Expiry. A block can combine rules with different deadlines; the kernel checks one deadline per
 * block. The block holds the answer at compile time (deny if any live deny, else allow) with the
 * latest deadline of the rules of that answer, so a deny is exact for its whole life. When a deny
 * expires before an allow of the same block, the kernel sees a dead block from then on: "no
 * answer" — the prefix falls through to shorter prefixes, never more permissive than the truth —
 * until the daemon re-pushes — its TTL collector recompiles a prefix when one of its rules expires
 * (within a second); `repushAtMs` says when a set needs it (null: never). Deadlines at or beyond the
 * address entry's own deadline are written as "never" (the address entry dies first): a learned
 * address refreshed with a new TTL keeps the same scope set and id.
 * The address entry must outlive its scoped rules. policy/compile.ts already gives it the latest
 * deadline of everything on the prefix (so its unscoped flags are exactly as precise as before
 * issue 15: the daemon's TTL collector re-pushes a prefix when one of its rules expires). An input
 * whose unscoped deadline is earlier than a scoped one is still handled: the unscoped rules are
 * folded into the scope set as an any-protocol, any-owner rule and the entry gets the later deadline.
 *
 * Worst cases (blocks per rule and protocol, measured by test/unit/datapath/scope-compile.test.ts):
 * a single port 1; a range 1..65535 16; the worst range 1..65534 30; "ports without protocols"
 * doubles it (tcp and udp); each user or group of a rule repeats the rule's blocks in its own table.
 */
import { invalidArgument } from "@netfence/proto/errors";
import type { RuleScope } from "@netfence/proto/parse";
import type { FilterEntry, ScopedRuleEntry } from "../policy/compiled.js";
import { eachBlock, type TableRule } from "./scope-blocks.js";
import { scopeSetKey } from "./scope-key.js";
import type { WireEntry } from "./wire-format.js";
import {
  ENTRY_SCOPE_ANY, ENTRY_SCOPE_GID, ENTRY_SCOPE_UID, OWNER_UNKNOWN, SCOPE_KIND, type ScopeKind, type ScopeWireEntry,
} from "./scope-wire.js";

/** An address entry as the driver writes it (wire-format.ts): `scopeId` absent or 0 = no scoped rule. */
export type { WireEntry };
export { scopeSetKey };

const TCP = 6;
const UDP = 17;
const MAX_PRINCIPAL = 0xfffffffe;
const UNSCOPED: RuleScope = { protocols: [], ports: [], users: [], groups: [] };

/** A scope set compiled once (without its id): the kind flags and the blocks per table. */
export interface CompiledScopeSet {
  readonly key: string;
  readonly flags: number;
  /** Blocks with the scope id compileScopeSet was given (0 if none: stamp one with withScopeId()). */
  readonly blocks: readonly ScopeWireEntry[];
  readonly repushAtMs: number | null;
}

/** An entry prepared for the registry: the rewritten address entry and its scope set (null = none). */
export interface PreparedEntry {
  readonly entry: FilterEntry;
  readonly rules: readonly ScopedRuleEntry[] | null;
  readonly key: string;
}

const isLive = (d: number | null, nowMs: number): boolean => d === null || d > nowMs;
/** The latest deadline of `rules` (null = one never expires). */
function maxDeadline(rules: readonly ScopedRuleEntry[]): number | null {
  let max = -Infinity;
  for (const r of rules) {
    if (r.expiresAtMs === null) return null;
    if (r.expiresAtMs > max) max = r.expiresAtMs;
  }
  return max;
}

const LISTS = ["users", "groups"] as const;

function checkRule(r: ScopedRuleEntry): void {
  const s = r.scope;
  if (!Number.isInteger(r.ruleId) || r.ruleId < 0 || r.ruleId > 0xffffffff) throw invalidArgument(`scoped rule ${r.ruleId}: invalid rule id`);
  if (r.expiresAtMs !== null && !(Number.isFinite(r.expiresAtMs) && r.expiresAtMs > 0)) throw invalidArgument(`scoped rule ${r.ruleId}: invalid deadline`);
  for (const p of s.protocols) if (!Number.isInteger(p) || p < 0 || p > 255) throw invalidArgument(`scoped rule ${r.ruleId}: invalid protocol ${p}`);
  for (const pr of s.ports) {
    if (!Number.isInteger(pr.from) || !Number.isInteger(pr.to) || pr.from < 1 || pr.to > 65535 || pr.from > pr.to) {
      throw invalidArgument(`scoped rule ${r.ruleId}: invalid port range ${pr.from}-${pr.to}`);
    }
  }
  for (const list of LISTS) {
    for (const p of s[list]) if (!Number.isInteger(p.id) || p.id < 0 || p.id > MAX_PRINCIPAL) throw invalidArgument(`scoped rule ${r.ruleId}: invalid user or group id ${p.id}`);
  }
}

/**
 * Rewrites one entry for the kernel (see "Expiry" above): drops expired scoped rules, folds
 * shorter-lived unscoped rules into the set, sets the address entry's deadline and normalises the
 * scoped deadlines. Entries without live scoped rules come back as they are (rules null).
 */
export function prepareEntry(e: FilterEntry, nowMs: number): PreparedEntry {
  const all = e.scoped ?? [];
  const scoped = all.every((r) => isLive(r.expiresAtMs, nowMs)) ? all : all.filter((r) => isLive(r.expiresAtMs, nowMs));
  if (scoped.length === 0) return { entry: e, rules: null, key: "" };
  for (const r of scoped) checkRule(r);
  const scopedUntil = maxDeadline(scoped);
  const unscopedLive = (e.allow || e.deny) && isLive(e.expiresAtMs, nowMs);
  const rules: ScopedRuleEntry[] = [...scoped];
  let entry: FilterEntry;
  if (unscopedLive && e.expiresAtMs !== null && (scopedUntil === null || e.expiresAtMs < scopedUntil)) {
    rules.push({ scope: UNSCOPED, allow: e.allow, deny: e.deny, ruleId: e.ruleId ?? 0, expiresAtMs: e.expiresAtMs });
    entry = { cidr: e.cidr, allow: false, deny: false, expiresAtMs: scopedUntil, ruleId: e.ruleId ?? 0 };
  } else {
    const until = unscopedLive ? e.expiresAtMs : scopedUntil;
    entry = { cidr: e.cidr, allow: unscopedLive && e.allow, deny: unscopedLive && e.deny, expiresAtMs: until, ruleId: e.ruleId ?? 0 };
  }
  const entryUntil = entry.expiresAtMs;
  const normalised = entryUntil === null ? rules : rules.map((r) => (r.expiresAtMs !== null && r.expiresAtMs >= entryUntil ? { ...r, expiresAtMs: null } : r));
  return { entry, rules: normalised, key: scopeSetKey(normalised) };
}

function tableRule(r: ScopedRuleEntry): TableRule {
  const s = r.scope;
  const protocols = s.protocols.length > 0 ? s.protocols : s.ports.length > 0 ? [TCP, UDP] : null;
  return { protocols, ports: s.ports, allow: r.allow, deny: r.deny, ruleId: r.ruleId, expiresAtMs: r.expiresAtMs };
}

/**
 * Compiles one scope set's tables (deterministic: tables by kind, then principal). `scope`: the id
 * the blocks carry (the registry passes the id it is about to allocate, so no copy is needed).
 */
export function compileScopeSet(rules: readonly ScopedRuleEntry[], key: string, nowMs: number, scope = 0): CompiledScopeSet {
  const tables = new Map<number, { kind: ScopeKind; principal: number; rules: TableRule[] }>();
  const add = (kind: ScopeKind, principal: number, r: TableRule): void => {
    const k = kind * 0x100000000 + principal; // principal <= 0xffffffff (OWNER_UNKNOWN)
    let t = tables.get(k);
    if (!t) tables.set(k, (t = { kind, principal, rules: [] }));
    t.rules.push(r);
  };
  for (const r of rules) {
    const tr = tableRule(r);
    if (r.scope.users.length === 0 && r.scope.groups.length === 0) add(SCOPE_KIND.ANY, 0, tr);
    for (const u of r.scope.users) add(SCOPE_KIND.UID, u.id, tr);
    for (const g of r.scope.groups) add(SCOPE_KIND.GID, g.id, tr);
    // A socket whose gid the kernel does not know (created before the attach) looks up this
    // principal: the deny part of every group rule, so that a group deny is not escaped by it.
    if (r.deny && r.scope.groups.length > 0) add(SCOPE_KIND.GID, OWNER_UNKNOWN, { ...tr, allow: false });
  }
  const order = [...tables.values()].sort((a, b) => a.kind - b.kind || a.principal - b.principal);
  const blocks: ScopeWireEntry[] = [];
  let flags = 0;
  let repushAtMs: number | null = null;
  for (const t of order) {
    const kindFlag = t.kind === SCOPE_KIND.ANY ? ENTRY_SCOPE_ANY : t.kind === SCOPE_KIND.UID ? ENTRY_SCOPE_UID : ENTRY_SCOPE_GID;
    eachBlock(t.rules, nowMs, (proto, port, portBits, v) => {
      flags |= kindFlag;
      if (v.allowOutlives && v.expiresAtMs !== null && (repushAtMs === null || v.expiresAtMs < repushAtMs)) repushAtMs = v.expiresAtMs;
      blocks.push({
        scope, kind: t.kind, principal: t.principal, proto, port, portBits,
        allow: v.allow, deny: v.deny, ruleId: v.ruleId, expiresAtMs: v.expiresAtMs,
      });
    });
  }
  return { key, flags, blocks, repushAtMs };
}

/** The address entry with its scope id and kinds (a plain literal: one object shape for the hot path). */
export function withScope(e: FilterEntry, scopeId: number, scopeKinds: number): WireEntry {
  return { cidr: e.cidr, allow: e.allow, deny: e.deny, expiresAtMs: e.expiresAtMs, ruleId: e.ruleId ?? 0, scopeId, scopeKinds };
}

export function withScopeId(blocks: readonly ScopeWireEntry[], scope: number): ScopeWireEntry[] {
  return blocks.map((b) => ({
    scope, kind: b.kind, principal: b.principal, proto: b.proto, port: b.port, portBits: b.portBits,
    allow: b.allow, deny: b.deny, ruleId: b.ruleId, expiresAtMs: b.expiresAtMs,
  }));
}
