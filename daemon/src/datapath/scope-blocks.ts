/**
 * Flattening of one scope table (issue 15): the scoped rules of one (scope set, kind, principal)
 * become DISJOINT-ANSWER LPM blocks over (protocol, destination port), so that the kernel's single
 * longest-prefix lookup returns the complete answer for a packet (scope-compile.ts has the whole
 * picture and the expiry rule; this file is the pure arithmetic).
 *
 * Levels (kernel prefix length, key bits including the generation byte):
 *   64          any protocol, any port           (the rules without protocols and without ports)
 *   72          one protocol, any port           (+ the level-64 rules)
 *   72+k        one protocol, an aligned block of 2^(16-k) ports, k = 1..16 (+ levels 64 and 72)
 * A more specific block carries the union of every rule that covers it (deny wins), so the
 * longest match is always the whole answer. A block whose answer equals the answer of the
 * level above it is left out (the shorter block answers the same), and adjacent port intervals
 * with the same answer are merged before they are cut into aligned power-of-two blocks.
 */
import type { PortRange } from "@netfence/proto/parse";

/** One scoped rule as a table sees it: `protocols` null = any protocol (then `ports` is empty). */
export interface TableRule {
  readonly protocols: readonly number[] | null;
  /** Destination port ranges; empty = any port. */
  readonly ports: readonly PortRange[];
  readonly allow: boolean;
  readonly deny: boolean;
  readonly ruleId: number;
  /** ms since the epoch; null = never expires. */
  readonly expiresAtMs: number | null;
}

/** What a block says: the value of its kernel entry. */
export interface BlockValue {
  readonly allow: boolean;
  readonly deny: boolean;
  readonly ruleId: number;
  readonly expiresAtMs: number | null;
  /**
   * True when the block's rules still allow after `expiresAtMs` (a deny expired before an allow of
   * the same block): the kernel then sees no live block, which is stricter than the truth until the
   * daemon re-pushes (scope-compile.ts, "Expiry").
   */
  readonly allowOutlives: boolean;
}

export interface Block {
  /** null = any protocol (level 64). */
  readonly proto: number | null;
  /** First port of the block (host order); 0 when the block covers every port. */
  readonly port: number;
  /** Fixed leading port bits, 0..16 (0 = every port). */
  readonly portBits: number;
  readonly value: BlockValue;
}

const later = (a: number | null, b: number | null): boolean => (a === null ? b !== null : b !== null && a > b);

/** True when `r` decides for longer than `best` (never-expiring first, then the lower rule id). */
const longerLived = (r: TableRule, best: TableRule): boolean =>
  later(r.expiresAtMs, best.expiresAtMs) || (r.expiresAtMs === best.expiresAtMs && r.ruleId < best.ruleId);

/** The live rule of `rules` that decides for the longest time (never-expiring first, then lowest rule id). */
function longestLived(rules: readonly TableRule[]): TableRule {
  let best = rules[0]!;
  for (const r of rules) {
    if (longerLived(r, best)) best = r;
  }
  return best;
}

/**
 * The answer of a set of rules that all cover a point, at `nowMs`: deny wins; the deadline is the
 * latest deadline of the deciding action's live rules (the answer holds until then); null when no
 * live rule says anything.
 */
export function decide(rules: readonly TableRule[], nowMs: number): BlockValue | null {
  const live = rules.filter((r) => r.expiresAtMs === null || r.expiresAtMs > nowMs);
  const denies = live.filter((r) => r.deny);
  if (denies.length > 0) {
    const d = longestLived(denies);
    const allows = live.filter((r) => r.allow);
    const allowOutlives = d.expiresAtMs !== null && allows.some((r) => r.expiresAtMs === null || r.expiresAtMs > d.expiresAtMs!);
    return { allow: false, deny: true, ruleId: d.ruleId, expiresAtMs: d.expiresAtMs, allowOutlives };
  }
  const allows = live.filter((r) => r.allow);
  if (allows.length === 0) return null;
  const a = longestLived(allows);
  return { allow: true, deny: false, ruleId: a.ruleId, expiresAtMs: a.expiresAtMs, allowOutlives: false };
}

export function sameValue(a: BlockValue | null, b: BlockValue | null): boolean {
  if (a === null || b === null) return a === b;
  return a.allow === b.allow && a.deny === b.deny && a.ruleId === b.ruleId && a.expiresAtMs === b.expiresAtMs &&
    a.allowOutlives === b.allowOutlives;
}

/** [from, to] (inclusive, 0..65535) as aligned power-of-two blocks, ascending. At most 30 blocks. */
export function alignedBlocks(from: number, to: number): Array<{ port: number; portBits: number }> {
  const out: Array<{ port: number; portBits: number }> = [];
  eachAligned(from, to, (port, portBits) => out.push({ port, portBits }));
  return out;
}

/** Receives the blocks of a table in order (no Block object per block: the compiler builds its own entry). */
export type BlockSink = (proto: number | null, port: number, portBits: number, value: BlockValue) => void;

/** The blocks of `value` over [from, to] for `proto`, given to `emit` (no intermediate list). */
function emitAligned(emit: BlockSink, proto: number, from: number, to: number, value: BlockValue): void {
  if (from === to) emit(proto, from, 16, value); // one port: the usual case
  else eachAligned(from, to, (port, portBits) => emit(proto, port, portBits, value));
}

function eachAligned(from: number, to: number, each: (port: number, portBits: number) => void): void {
  let p = from;
  while (p <= to) {
    let size = 1;
    let bits = 16;
    // Grow while the block stays aligned at p and inside [p, to].
    while (size < 65536 && p % (size * 2) === 0 && p + size * 2 - 1 <= to) {
      size *= 2;
      bits--;
    }
    each(p, bits);
    p += size;
  }
}

/** One rule alone (the common case: a rule per scope set): the same blocks, without the interval arithmetic. */
function singleRule(r: TableRule, nowMs: number, emit: BlockSink): void {
  const value = decide([r], nowMs);
  if (value === null) return;
  if (r.protocols === null) {
    emit(null, 0, 0, value);
    return;
  }
  const ranges: PortRange[] = [];
  for (const pr of [...r.ports].sort((a, b) => a.from - b.from)) {
    const last = ranges[ranges.length - 1];
    if (last !== undefined && pr.from <= last.to + 1) ranges[ranges.length - 1] = { from: last.from, to: Math.max(last.to, pr.to) };
    else ranges.push(pr);
  }
  for (const proto of [...new Set(r.protocols)].sort((a, b) => a - b)) {
    if (ranges.length === 0) emit(proto, 0, 0, value);
    for (const pr of ranges) emitAligned(emit, proto, pr.from, pr.to, value);
  }
}

/** The rules of `rules` in force at `nowMs` (the others never decide anything). */
const liveRules = (rules: readonly TableRule[], nowMs: number): TableRule[] => rules.filter((r) => r.expiresAtMs === null || r.expiresAtMs > nowMs);

/**
 * decide() over `base` plus the rules of `rules` whose count in `active` is positive, without
 * building the union (the sweep's inner step). Every rule given is live.
 */
function decideActive(base: readonly TableRule[], rules: readonly TableRule[], active: Int32Array): BlockValue | null {
  let deny: TableRule | null = null;
  let allow: TableRule | null = null;
  for (let i = 0, n = base.length + rules.length; i < n; i++) {
    const r = i < base.length ? base[i]! : rules[i - base.length]!;
    if (i >= base.length && active[i - base.length]! <= 0) continue;
    if (r.deny && (deny === null || longerLived(r, deny))) deny = r;
    if (r.allow && (allow === null || longerLived(r, allow))) allow = r;
  }
  if (deny !== null) {
    // The longest-lived allow outlives the deny iff any allow does.
    const allowOutlives = deny.expiresAtMs !== null && allow !== null && (allow.expiresAtMs === null || allow.expiresAtMs > deny.expiresAtMs);
    return { allow: false, deny: true, ruleId: deny.ruleId, expiresAtMs: deny.expiresAtMs, allowOutlives };
  }
  if (allow === null) return null;
  return { allow: true, deny: false, ruleId: allow.ruleId, expiresAtMs: allow.expiresAtMs, allowOutlives: false };
}

const SHIFT = 0x100000000;

/**
 * The port runs of one protocol: a sweep over the sorted range endpoints (each range opens at
 * `from` and closes at `to + 1`); each elementary interval between two consecutive endpoints is
 * answered by the base rules and the port rules open over it; equal neighbours are merged.
 */
function portRuns(base: readonly TableRule[], portRules: readonly TableRule[], v1: BlockValue | null): Array<{ from: number; to: number; value: BlockValue }> {
  // Events packed as point * 2^32 + rule index * 2 + (1 when the range closes): sorted numerically
  // (exact: below 2^49).
  const events: number[] = [];
  for (let j = 0; j < portRules.length; j++) {
    for (const pr of portRules[j]!.ports) events.push(pr.from * SHIFT + j * 2, (pr.to + 1) * SHIFT + j * 2 + 1);
  }
  events.sort((a, b) => a - b);
  const active = new Int32Array(portRules.length);
  let open = 0;
  const runs: Array<{ from: number; to: number; value: BlockValue }> = [];
  let k = 0;
  while (k < events.length) {
    const from = Math.floor(events[k]! / SHIFT);
    for (; k < events.length && Math.floor(events[k]! / SHIFT) === from; k++) {
      const ev = events[k]! % SHIFT;
      const j = ev >>> 1;
      if ((ev & 1) === 0) { if (active[j]!++ === 0) open++; } else if (--active[j]! === 0) open--;
    }
    if (k === events.length || open === 0) continue;
    const to = Math.floor(events[k]! / SHIFT) - 1;
    const v = decideActive(base, portRules, active);
    if (v === null || sameValue(v, v1)) continue;
    const last = runs[runs.length - 1];
    if (last && last.to + 1 === from && sameValue(last.value, v)) last.to = to;
    else runs.push({ from, to, value: v });
  }
  return runs;
}

/** The blocks of one table, sorted by (proto, port, portBits); deterministic for equal input. */
export function flattenTable(rules: readonly TableRule[], nowMs: number): Block[] {
  const out: Block[] = [];
  eachBlock(rules, nowMs, (proto, port, portBits, value) => out.push({ proto, port, portBits, value }));
  return out;
}

/** flattenTable's blocks, in the same order, given to `emit` one by one. */
export function eachBlock(rules: readonly TableRule[], nowMs: number, emit: BlockSink): void {
  if (rules.length === 1) return singleRule(rules[0]!, nowMs, emit);
  // Rules no longer in force are left out: they decide nothing, and the cuts they would add
  // only split runs that merge again.
  const live = liveRules(rules, nowMs);
  const anyRules: TableRule[] = [];
  const byProto = new Map<number, TableRule[]>();
  for (const r of live) {
    if (r.protocols === null) {
      anyRules.push(r);
      continue;
    }
    for (let i = 0; i < r.protocols.length; i++) {
      const proto = r.protocols[i]!;
      if (r.protocols.indexOf(proto) !== i) continue; // a protocol named twice
      const mine = byProto.get(proto);
      if (mine) mine.push(r);
      else byProto.set(proto, [r]);
    }
  }
  const v0 = decide(anyRules, nowMs);
  if (v0) emit(null, 0, 0, v0);
  const protos = [...byProto.keys()].sort((a, b) => a - b);
  for (const proto of protos) {
    const mine = byProto.get(proto)!;
    const protoOnly = mine.filter((r) => r.ports.length === 0);
    const portRules = mine.filter((r) => r.ports.length > 0);
    const baseRules = protoOnly.length > 0 ? [...anyRules, ...protoOnly] : anyRules;
    const v1 = protoOnly.length > 0 ? decide(baseRules, nowMs) : v0;
    if (protoOnly.length > 0 && !sameValue(v1, v0) && v1) emit(proto, 0, 0, v1);
    if (portRules.length === 0) continue;
    for (const run of portRuns(baseRules, portRules, v1)) emitAligned(emit, proto, run.from, run.to, run.value);
  }
}
