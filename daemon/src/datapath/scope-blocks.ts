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

/** The live rule of `rules` that decides for the longest time (never-expiring first, then lowest rule id). */
function longestLived(rules: readonly TableRule[]): TableRule {
  let best = rules[0]!;
  for (const r of rules) {
    if (later(r.expiresAtMs, best.expiresAtMs) || (r.expiresAtMs === best.expiresAtMs && r.ruleId < best.ruleId)) best = r;
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
  let p = from;
  while (p <= to) {
    let size = 1;
    // Grow while the block stays aligned at p and inside [p, to].
    while (size < 65536 && p % (size * 2) === 0 && p + size * 2 - 1 <= to) size *= 2;
    out.push({ port: p, portBits: 16 - Math.log2(size) });
    p += size;
  }
  return out;
}

const covers = (ranges: readonly PortRange[], from: number, to: number): boolean => ranges.some((r) => r.from <= from && to <= r.to);

/** The blocks of one table, sorted by (proto, port, portBits); deterministic for equal input. */
export function flattenTable(rules: readonly TableRule[], nowMs: number): Block[] {
  const out: Block[] = [];
  const anyRules = rules.filter((r) => r.protocols === null);
  const v0 = decide(anyRules, nowMs);
  if (v0) out.push({ proto: null, port: 0, portBits: 0, value: v0 });
  const protos = [...new Set(rules.flatMap((r) => r.protocols ?? []))].sort((a, b) => a - b);
  for (const proto of protos) {
    const mine = rules.filter((r) => r.protocols !== null && r.protocols.includes(proto));
    const protoOnly = mine.filter((r) => r.ports.length === 0);
    const portRules = mine.filter((r) => r.ports.length > 0);
    const baseRules = [...anyRules, ...protoOnly];
    const v1 = protoOnly.length > 0 ? decide(baseRules, nowMs) : v0;
    if (protoOnly.length > 0 && !sameValue(v1, v0) && v1) out.push({ proto, port: 0, portBits: 0, value: v1 });
    if (portRules.length === 0) continue;
    const cuts = [...new Set(portRules.flatMap((r) => r.ports.flatMap((pr) => [pr.from, pr.to + 1])))].sort((a, b) => a - b);
    // Elementary intervals between cuts, with their answers; equal neighbours merged.
    const runs: Array<{ from: number; to: number; value: BlockValue }> = [];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const from = cuts[i]!;
      const to = cuts[i + 1]! - 1;
      const covering = portRules.filter((r) => covers(r.ports, from, to));
      if (covering.length === 0) continue;
      const v = decide([...baseRules, ...covering], nowMs);
      if (v === null || sameValue(v, v1)) continue;
      const last = runs[runs.length - 1];
      if (last && last.to + 1 === from && sameValue(last.value, v)) last.to = to;
      else runs.push({ from, to, value: v });
    }
    for (const run of runs) {
      for (const b of alignedBlocks(run.from, run.to)) out.push({ proto, port: b.port, portBits: b.portBits, value: run.value });
    }
  }
  return out;
}
