/**
 * The content key of a scoped-rule set (scope-compile.ts, scope-registry.ts): equal keys iff the sets
 * are equal — the same rules (scope, action, rule id, deadline) in any order, user and group names
 * ignored. The registry deduplicates sets by it and keeps it for the generation's life.
 *
 * Encoding: each rule as self-delimiting bytes (lists with their length first), the rules in
 * canonical order (by rule id, then by their bytes) one after another, the whole read as a latin1
 * string — one flat string per set. The text key it replaces ("p=6;d=80;u=1;g=|a|7|-" per rule,
 * joined) built a tree of a dozen strings per rule that all lived until the set was hashed: with
 * 10,000 rules ≈ 5 MB that the young-generation GC copied, which was most of the scope compiler's
 * time (bench/segmentation/apply-probe.ts; docs/architecture.md).
 *
 * Numbers: a list length as an unsigned LEB128 varint; every value (protocol, port, id, rule id,
 * deadline) as a tag byte, then a varint (0: a non-negative safe integer, the usual case, 1–3 bytes)
 * or its float64 bytes (1: anything else), so the encoding is exact for any number and short for
 * the usual ones (≈ 21 bytes for a one-port, one-user rule; the latin1 decode is most of a key's cost).
 */
import type { ScopedRuleEntry } from "../policy/compiled.js";

let buf = Buffer.allocUnsafe(1 << 16);
let len = 0;

function room(n: number): void {
  if (len + n <= buf.length) return;
  const next = Buffer.allocUnsafe(Math.max(buf.length * 2, len + n));
  buf.copy(next, 0, 0, len);
  buf = next;
}

function byte(v: number): void {
  room(1);
  buf[len++] = v;
}

/** Unsigned LEB128 of a non-negative safe integer (arithmetic: beyond 32 bits too). */
function varint(v: number): void {
  room(8);
  while (v >= 0x80) {
    buf[len++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[len++] = v;
}

/** Any number, exactly: tag 0 + varint for a non-negative safe integer, else tag 1 + float64. */
function num(v: number): void {
  if (Number.isSafeInteger(v) && v >= 0) {
    byte(0);
    varint(v);
    return;
  }
  byte(1);
  room(8);
  buf.writeDoubleLE(v, len);
  len += 8;
}

function writeRule(r: ScopedRuleEntry): void {
  const s = r.scope;
  varint(s.protocols.length);
  for (const p of s.protocols) num(p);
  varint(s.ports.length);
  for (const p of s.ports) {
    num(p.from);
    num(p.to);
  }
  varint(s.users.length);
  for (const p of s.users) num(p.id);
  varint(s.groups.length);
  for (const p of s.groups) num(p.id);
  byte((r.allow ? 1 : 0) | (r.deny ? 2 : 0) | (r.expiresAtMs === null ? 4 : 0));
  num(r.ruleId);
  if (r.expiresAtMs !== null) num(r.expiresAtMs);
}

/** The bytes written since `from`, as a string (and the scratch buffer rewound to `from`). */
function take(from: number): string {
  const out = buf.toString("latin1", from, len);
  len = from;
  return out;
}

/** The content key of a scoped-rule set: order-independent, names ignored. */
export function scopeSetKey(rules: readonly ScopedRuleEntry[]): string {
  len = 0;
  // Canonical order: by rule id, then by the rule's bytes. Rules usually arrive with strictly
  // increasing ids: already in that order, written straight into one buffer.
  let ascending = true;
  for (let i = 1; i < rules.length && ascending; i++) ascending = rules[i - 1]!.ruleId < rules[i]!.ruleId;
  if (ascending) {
    for (const r of rules) writeRule(r);
    return take(0);
  }
  const keyed = rules.map((r) => {
    writeRule(r);
    return { id: r.ruleId, bytes: take(0) };
  });
  keyed.sort((a, b) => a.id - b.id || (a.bytes < b.bytes ? -1 : a.bytes > b.bytes ? 1 : 0));
  let out = "";
  for (const k of keyed) out += k.bytes;
  return out;
}
