import { isScalar, isSeq, type Node, type YAMLMap } from "yaml";
import { parseRuleScope } from "@netfence/proto/parse";
import type { ScopeSpec } from "@netfence/control-plane-sdk";

/**
 * The scope keys of a CIDR or domain entry in the policy file (issue 15):
 *   allow: [{cidr: 10.0.0.0/24, protocols: [tcp], ports: [443, "8000-8100"], users: [web], groups: [staff]}]
 * Checked with the daemon's own parser (proto/src/parse/rule-scope-parse.ts), so a file that loads
 * never carries a scope a daemon rejects for its form. User and group names are resolved by the
 * daemon when it applies the rule (this host's users need not be the daemon's).
 */

export const SCOPE_KEYS = ["protocols", "ports", "users", "groups"] as const;

export interface ScopeNodeContext {
  get(map: YAMLMap, key: string): Node | undefined;
  error(node: Node, message: string): void;
}

/** The entry's scope (undefined: none given), or null after reporting a problem. */
export function scopeOfEntry(ctx: ScopeNodeContext, map: YAMLMap, what: string): ScopeSpec | undefined | null {
  const lists: Partial<Record<(typeof SCOPE_KEYS)[number], (string | number)[]>> = {};
  let any = false;
  let firstNode: Node | undefined;
  for (const key of SCOPE_KEYS) {
    const node = ctx.get(map, key);
    if (node === undefined) continue;
    firstNode ??= node;
    if (!isSeq(node)) {
      ctx.error(node, `${what}: ${key} must be a list`);
      return null;
    }
    const values: (string | number)[] = [];
    for (const item of node.items) {
      const v = isScalar(item) ? (item as { value: unknown }).value : undefined;
      if (typeof v !== "string" && typeof v !== "number") {
        ctx.error(item as Node, `${what}: ${key} entries must be names or numbers`);
        return null;
      }
      values.push(v);
    }
    lists[key] = values;
    any = true;
  }
  if (!any) return undefined;
  const spec: ScopeSpec = lists;
  try {
    // Names are resolved by the daemon: only their form is checked here.
    return parseRuleScope(spec, "scope", () => 0) === undefined ? undefined : spec;
  } catch (err) {
    ctx.error(firstNode!, `${what}: ${(err as Error).message}`);
    return null;
  }
}
