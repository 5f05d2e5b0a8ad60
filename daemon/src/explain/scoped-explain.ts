import { formatCidr } from "@netfence/proto/parse";
import type { KernelLookup, LookupPacket } from "../datapath/lookup-wire.js";
import type { PolicyState } from "../policy/policy-state.js";
import { primaryGroupOf, resolvePrincipals } from "../policy/principals.js";
import { prefixOf, walkPolicy, type PolicyWalk, type ScopedRuleView } from "./scope-walk.js";
import type { ExplainProbe, PolicyAnswer } from "./verdict.js";

/**
 * Explain's scoped part (issue 15): who the question is for, and the policy walk over the daemon's
 * compiled entries when scoped rules are on the way (scope-walk.ts). Without scoped rules the
 * kernel's own LOOKUP answer stands, as before.
 */

export interface ExplainOwner {
  readonly uid: number | null;
  readonly gid: number | null;
  /** "uid 33 (web), gid 33 (web)"; "" = not given. */
  readonly text: string;
}

/** Resolves the question's user and group (names through NSS, numbers as they are); unknown names: INVALID_ARGUMENT. */
export async function resolveOwner(user: string | null, group: string | null): Promise<ExplainOwner> {
  const u = user === null ? null : (await resolvePrincipals("user", [user]))[0]!;
  const g = group === null ? null : (await resolvePrincipals("group", [group]))[0]!;
  // A user without --group: the socket of a process of that user carries its primary group (the
  // sock_create stamp), so the question is asked for it — not for an unknown gid, to which every
  // group deny applies (only a socket from before the attach has one).
  const primary = g === null && u !== null ? await primaryGroupOf(u.id) : null;
  const parts: string[] = [];
  if (u !== null) parts.push(`uid ${u.id}${u.name ? ` (${u.name})` : ""}`);
  if (g !== null) parts.push(`gid ${g.id}${g.name ? ` (${g.name})` : ""}`);
  else if (primary !== null) parts.push(`gid ${primary} (the user's primary group)`);
  return { uid: u?.id ?? null, gid: g?.id ?? primary, text: parts.join(", ") };
}

export interface ScopedExplanation {
  readonly walk: PolicyWalk;
  /** Set when the daemon's walk (not the kernel's LOOKUP) decides step i: a LOOKUP reply without the scoped walk (before layout 6). */
  readonly policy: PolicyAnswer | undefined;
  /** "kernel": the loader's LOOKUP walked the scope tables for the question; "daemon": the daemon's compiled policy did. */
  readonly source: "kernel" | "daemon";
  /** The deciding entry's scoped rules (empty without). */
  readonly scoped: readonly ScopedRuleView[];
  readonly notes: string[];
}

/** The question as the loader's LOOKUP evaluates scoped entries for it (open protocol/port: 0, open owner: unknown). */
export function lookupPacket(probe: ExplainProbe): LookupPacket {
  return { protocol: probe.protocol ?? 0, port: probe.port ?? 0, uid: probe.uid ?? null, gid: probe.gid ?? null };
}

export function explainScoped(state: PolicyState, k: KernelLookup, probe: ExplainProbe, nowMs: number): ScopedExplanation {
  const walk = walkPolicy(
    probe.family,
    (len) => {
      const c = prefixOf(probe.family, probe.addr, len);
      return state.entryFor(formatCidr(c), c, nowMs);
    },
    { protocol: probe.protocol, port: probe.port, uid: probe.uid ?? null, gid: probe.gid ?? null },
    nowMs,
  );
  const notes: string[] = [];
  const kernelWalks = (k as Partial<KernelLookup>).scoped !== undefined; // a layout-6 LOOKUP reply
  const source = kernelWalks || !walk.scoped ? "kernel" : "daemon";
  if (!walk.scoped && (k.scopedSkipped ?? 0) === 0 && k.scoped == null) return { walk, policy: undefined, source, scoped: [], notes };
  const d = walk.decided;
  let policy: PolicyAnswer | undefined;
  if (!kernelWalks) {
    policy = {
      match: d === null ? null : {
        cidr: d.cidr, prefixLen: d.prefixLen, allow: d.allow, deny: d.deny, ruleId: d.ruleId, expiresAtMs: d.expiresAtMs,
        table: k.match?.cidr === d.cidr ? k.match.table : d.host ? "small-exact" : "lpm",
      },
      depth: walk.depth,
    };
    notes.push("scoped rules are on the way: step i was walked over the daemon's compiled policy (this loader's LOOKUP does not walk the scope tables)");
  } else if ((d?.cidr ?? null) !== (k.match?.cidr ?? null) || walk.depth !== (k.depthExhausted === true) || (d !== null && k.match !== null && d.deny !== k.match.deny)) {
    notes.push(
      `the daemon's compiled policy decides this packet at ${d?.cidr ?? (walk.depth ? "policy-depth" : "no entry")} but the kernel at ${k.match?.cidr ?? (k.depthExhausted ? "policy-depth" : "no entry")}: ` +
        "the kernel's answer stands (changed behind the daemon's back, or a change still being written?)",
    );
  }
  if (probe.protocol === null && walk.scoped) notes.push("no protocol/port given: rules limited to protocols or ports do not match; give ADDRESS:PORT/PROTO");
  if (walk.owners && probe.uid == null && probe.gid == null) notes.push("no --user/--group given: rules limited to users or groups do not match (as for a socket whose owner is unknown)");
  return { walk, policy, source, scoped: [...(d?.scoped ?? [])], notes };
}
