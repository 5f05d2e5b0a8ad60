import { formatCidr, type Cidr } from "@netfence/proto/parse";
import type { AttachmentPolicy, CidrRule } from "./policy.js";
import type { FilterEntry, FilterPolicy } from "../datapath/filter.js";

/**
 * Pure compile step: control-plane CIDR rules + DNS-learned addresses → one kernel entry per
 * unique prefix. Allow and deny flags are merged per prefix (the kernel lets deny win at equal
 * prefix); the entry's deadline is the latest of its live rules, and a permanent rule (null) wins.
 * Rules already expired at `nowMs` are dropped.
 */

export interface LearnedAddress {
  /** /32 or /128 of an address a DNS answer produced. */
  readonly cidr: Cidr;
  readonly expiresAtMs: number;
}

interface Acc {
  cidr: Cidr;
  allow: boolean;
  deny: boolean;
  expiresAtMs: number | null;
}

function live(expiresAtMs: number | null, nowMs: number): boolean {
  return expiresAtMs === null || expiresAtMs > nowMs;
}

function add(acc: Map<string, Acc>, cidr: Cidr, kind: "allow" | "deny", expiresAtMs: number | null): void {
  const key = formatCidr(cidr);
  const cur = acc.get(key);
  if (cur === undefined) {
    acc.set(key, { cidr, allow: kind === "allow", deny: kind === "deny", expiresAtMs });
    return;
  }
  if (kind === "allow") cur.allow = true;
  else cur.deny = true;
  cur.expiresAtMs = cur.expiresAtMs === null || expiresAtMs === null ? null : Math.max(cur.expiresAtMs, expiresAtMs);
}

function accumulate(
  policy: Pick<AttachmentPolicy, "allowCidrs" | "denyCidrs">,
  learned: Iterable<LearnedAddress>,
  nowMs: number,
  only: string | null,
): Map<string, Acc> {
  const acc = new Map<string, Acc>();
  const take = (rules: readonly CidrRule[], kind: "allow" | "deny"): void => {
    for (const r of rules) {
      if (!live(r.expiresAtMs, nowMs)) continue;
      if (only !== null && formatCidr(r.cidr) !== only) continue;
      add(acc, r.cidr, kind, r.expiresAtMs);
    }
  };
  take(policy.allowCidrs, "allow");
  take(policy.denyCidrs, "deny");
  for (const l of learned) {
    if (!live(l.expiresAtMs, nowMs)) continue;
    if (only !== null && formatCidr(l.cidr) !== only) continue;
    add(acc, l.cidr, "allow", l.expiresAtMs);
  }
  return acc;
}

function toEntry(a: Acc): FilterEntry {
  return { cidr: a.cidr, allow: a.allow, deny: a.deny, expiresAtMs: a.expiresAtMs };
}

export function compileEntries(
  policy: Pick<AttachmentPolicy, "allowCidrs" | "denyCidrs">,
  learned: Iterable<LearnedAddress>,
  nowMs: number,
): FilterEntry[] {
  return [...accumulate(policy, learned, nowMs, null).values()].map(toEntry);
}

/** The entry one prefix should have now, or null when nothing live remains for it. */
export function compilePrefix(
  policy: Pick<AttachmentPolicy, "allowCidrs" | "denyCidrs">,
  learned: Iterable<LearnedAddress>,
  cidr: Cidr,
  nowMs: number,
): FilterEntry | null {
  const a = accumulate(policy, learned, nowMs, formatCidr(cidr)).values().next();
  return a.done ? null : toEntry(a.value);
}

export function compilePolicy(policy: AttachmentPolicy, learned: Iterable<LearnedAddress>, nowMs: number): FilterPolicy {
  return { mode: policy.mode, audit: policy.audit, entries: compileEntries(policy, learned, nowMs) };
}
