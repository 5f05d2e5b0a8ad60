import { formatCidr } from "@netfence/proto/parse";
import type { KernelLookup, KernelMatch } from "../datapath/lookup-wire.js";
import type { PolicyState } from "../policy/policy-state.js";
import { resolvePrincipals } from "../policy/principals.js";
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
  const parts: string[] = [];
  if (u !== null) parts.push(`uid ${u.id}${u.name ? ` (${u.name})` : ""}`);
  if (g !== null) parts.push(`gid ${g.id}${g.name ? ` (${g.name})` : ""}`);
  return { uid: u?.id ?? null, gid: g?.id ?? null, text: parts.join(", ") };
}

export interface ScopedExplanation {
  readonly walk: PolicyWalk;
  /** Set when the walk (not the kernel's LOOKUP) decides step i. */
  readonly policy: PolicyAnswer | undefined;
  /** The deciding entry's scoped rules (empty without). */
  readonly scoped: readonly ScopedRuleView[];
  readonly notes: string[];
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
  if (!walk.scoped) return { walk, policy: undefined, scoped: [], notes };
  const d = walk.decided;
  const match: KernelMatch | null =
    d === null
      ? null
      : {
          cidr: d.cidr, prefixLen: d.prefixLen, allow: d.allow, deny: d.deny, ruleId: d.ruleId, expiresAtMs: d.expiresAtMs,
          table: k.match?.cidr === d.cidr ? k.match.table : d.host ? "small-exact" : "lpm",
        };
  notes.push("scoped rules are on the way: step i was walked over the daemon's compiled policy (the kernel holds the same rules as flattened scope tables; its LOOKUP does not walk them)");
  const all = [...(d?.scoped ?? [])];
  if (probe.protocol === null) notes.push("no protocol/port given: rules limited to protocols or ports do not match; give ADDRESS:PORT/PROTO");
  if (walk.owners && probe.uid == null && probe.gid == null) notes.push("no --user/--group given: rules limited to users or groups do not match (as for a socket whose owner is unknown)");
  return { walk, policy: { match, depth: walk.depth }, scoped: all, notes };
}
