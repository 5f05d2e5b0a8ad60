import { formatCidr, type Cidr, type RuleScope } from "@netfence/proto/parse";
import type { FilterEntry, ScopedRuleEntry } from "../policy/compiled.js";
import { scopeText as formatScope } from "../policy/scope-text.js";

/**
 * The policy lookup of a packet with its protocol, port and owner (issue 15), mirrored from
 * bpf/include/policy.h nf_lookup_v4/v6 + nf_entry_match over the daemon's compiled entries (the
 * loader's LOOKUP does not walk the scope tables yet):
 *   - the host entry (/32, /128: the exact tables) is looked at first and costs no hop;
 *   - then the LPM walk, longest prefix first, at most LPM_HOPS (4) entries: an entry that is
 *     expired, or live but with no rule matching the packet, is stepped over; running out of hops
 *     FAILS CLOSED (reason "policy-depth");
 *   - an entry matches when its unscoped flags are set or a scoped rule matches (rule-scope.ts
 *     semantics; the kernel's flattened scope tables are proven equal to them by
 *     test/unit/datapath/scope-compile.test.ts); deny wins at the entry; the rule id is the entry's
 *     own unless the entry has no deny and a scoped deny decided, or the entry has no flags.
 */

export const LPM_HOPS = 4;
const TCP = 6;
const UDP = 17;

export interface PacketOwner {
  /** null = not given (rules for users do not match). */
  readonly uid: number | null;
  readonly gid: number | null;
}

export interface WalkProbe extends PacketOwner {
  readonly protocol: number | null;
  readonly port: number | null;
}

export interface ScopedRuleView {
  readonly ruleId: number;
  readonly action: "allow" | "deny";
  readonly scope: string;
  readonly matched: boolean;
  readonly expiresAtMs: number | null;
}

export interface WalkEntry {
  readonly cidr: string;
  readonly prefixLen: number;
  readonly allow: boolean;
  readonly deny: boolean;
  readonly ruleId: number;
  readonly expiresAtMs: number | null;
  readonly host: boolean;
  readonly scoped: readonly ScopedRuleView[];
}

export interface PolicyWalk {
  /** The entry that decided (its flags are the combined answer), or null. */
  readonly decided: WalkEntry | null;
  /** Entries stepped over before it, longest first. */
  readonly skipped: readonly { readonly cidr: string; readonly why: "expired" | "no rule matches" }[];
  /** The LPM walk ran out of hops: the data path drops the packet (policy-depth). */
  readonly depth: boolean;
  /** Some entry on the way has scoped rules (the answer depends on protocol, port or owner). */
  readonly scoped: boolean;
  /** Some of them are limited to users or groups. */
  readonly owners: boolean;
}

/** "tcp/443,8000-8100 users web(33) groups 5"; "any" for an unscoped rule. */
export function scopeText(s: RuleScope): string {
  return formatScope(s) || "any";
}

/**
 * rule-scope.ts's matching, for a question whose protocol, port or owner may be left open (then it
 * does not match a rule that needs it) — except an open group for a deny rule with groups: the
 * kernel applies group denies to a socket whose gid it does not know (scope-compile.ts).
 */
export function scopeMatches(s: RuleScope, p: WalkProbe, deny = false): boolean {
  const protos = s.protocols.length > 0 ? s.protocols : s.ports.length > 0 ? [TCP, UDP] : null;
  if (protos !== null && (p.protocol === null || !protos.includes(p.protocol))) return false;
  if (s.ports.length > 0 && (p.port === null || !s.ports.some((r) => r.from <= p.port! && p.port! <= r.to))) return false;
  if (s.users.length === 0 && s.groups.length === 0) return true;
  if (p.uid !== null && s.users.some((u) => u.id === p.uid)) return true;
  return p.gid === null ? deny && s.groups.length > 0 : s.groups.some((g) => g.id === p.gid);
}

const live = (d: number | null, nowMs: number): boolean => d === null || d > nowMs;

function view(r: ScopedRuleEntry, p: WalkProbe): ScopedRuleView {
  return { ruleId: r.ruleId, action: r.deny ? "deny" : "allow", scope: scopeText(r.scope), matched: scopeMatches(r.scope, p, r.deny), expiresAtMs: r.expiresAtMs };
}

/** nf_entry_match(): the entry's combined answer for the packet, or null when no rule of it matches. */
function entryMatch(e: FilterEntry, p: WalkProbe, nowMs: number): WalkEntry | null {
  let allow = e.allow;
  let deny = e.deny;
  let ruleId = e.ruleId ?? 0;
  const scoped = (e.scoped ?? []).map((r) => view(r, p));
  const hits = (e.scoped ?? []).filter((r) => live(r.expiresAtMs, nowMs) && scopeMatches(r.scope, p, r.deny));
  const sDeny = hits.find((r) => r.deny);
  const sAny = sDeny ?? hits.find((r) => r.allow);
  if (sAny !== undefined && !deny && (sDeny !== undefined || (!allow && !deny))) ruleId = sAny.ruleId;
  if (hits.some((r) => r.allow)) allow = true;
  if (sDeny !== undefined) deny = true;
  if (!allow && !deny) return null;
  const host = e.cidr.prefixLen === (e.cidr.family === 4 ? 32 : 128);
  return { cidr: formatCidr(e.cidr), prefixLen: e.cidr.prefixLen, allow, deny, ruleId, expiresAtMs: e.expiresAtMs, host, scoped };
}

/**
 * The walk over the entries that contain the destination (`at(prefixLen)`: the compiled entry of
 * the destination's prefix of that length, or null).
 */
export function walkPolicy(family: 4 | 6, at: (prefixLen: number) => FilterEntry | null, p: WalkProbe, nowMs: number): PolicyWalk {
  const max = family === 4 ? 32 : 128;
  const skipped: { cidr: string; why: "expired" | "no rule matches" }[] = [];
  let scoped = false;
  let owners = false;
  const visit = (e: FilterEntry): WalkEntry | null => {
    if ((e.scoped?.length ?? 0) > 0) scoped = true;
    if (e.scoped?.some((r) => r.scope.users.length > 0 || r.scope.groups.length > 0)) owners = true;
    if (!live(e.expiresAtMs, nowMs)) {
      skipped.push({ cidr: formatCidr(e.cidr), why: "expired" });
      return null;
    }
    const m = entryMatch(e, p, nowMs);
    if (m === null) skipped.push({ cidr: formatCidr(e.cidr), why: "no rule matches" });
    return m;
  };
  const host = at(max);
  if (host !== null) {
    const m = visit(host);
    if (m !== null) return { decided: m, skipped, depth: false, scoped, owners };
  }
  let hops = 0;
  for (let len = max - 1; len >= 0; len--) {
    const e = at(len);
    if (e === null) continue;
    const m = visit(e);
    if (m !== null) return { decided: m, skipped, depth: false, scoped, owners };
    hops++;
    if (len === 0) break;
    if (hops >= LPM_HOPS) return { decided: null, skipped, depth: true, scoped, owners };
  }
  return { decided: null, skipped, depth: false, scoped, owners };
}

/** The destination's prefix of `len` bits. */
export function prefixOf(family: 4 | 6, addr: Uint8Array, len: number): Cidr {
  const out = Uint8Array.from(addr);
  for (let i = 0; i < out.length; i++) {
    const bits = Math.max(0, Math.min(8, len - i * 8));
    out[i] = out[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return { family, addr: out, prefixLen: len };
}
