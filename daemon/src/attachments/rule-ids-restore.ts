import { formatCidr } from "@netfence/proto/parse";
import { scopeRuleKey } from "../policy/scoped-rules.js";
import type { Filter } from "../datapath/filter.js";
import { HITS_CAP, RULE_ID } from "../datapath/hits-wire.js";
import { entryOf, type RuleStamper } from "../policy/compile.js";
import type { PolicyState } from "../policy/policy-state.js";
import { cidrRuleKey, learnedRuleKey } from "../policy/rule-ids.js";

/**
 * After a restart: the rule ids are the daemon's (memory only), the kernel entries and counters
 * are pinned. Before anything is written, each rule takes back the id its kernel entries carry —
 * the key that decides each entry now, with the same choice compile makes (deny, allow, first live
 * learned name) — so counts stay with their rules; ids with counts that no rule claims are zeroed
 * before reuse (RuleIds.restore). When the kernel cannot be read, every counter is zeroed instead
 * (`zeroAllRuleHits`): counts restart, they are never attributed to another rule.
 */
export async function restoreRuleIds(filter: Filter, id: string, state: PolicyState, nowMs: number): Promise<void> {
  const [kernel, hits] = await Promise.all([filter.inspect(id), filter.ruleHits(id, 0)]);
  const claims: [string, number][] = [];
  const learnedClaims: [string, string][] = [];
  for (const e of kernel.policy.entries) {
    const rid = e.ruleId ?? RULE_ID.NONE;
    const key = formatCidr(e.cidr);
    let chosen: string | null = null;
    const recorder: RuleStamper = {
      cidr: (kind, prefixKey) => {
        chosen = cidrRuleKey(kind, prefixKey);
        return 0;
      },
      learned: (name) => {
        chosen = learnedRuleKey(state.dns, name);
        learnedClaims.push([name, chosen]);
        return 0;
      },
    };
    const rules = state.rules.get(key) ?? null;
    entryOf(e.cidr, rules, state.learned.forPrefix(key), nowMs, recorder, key);
    if (chosen !== null && rid >= RULE_ID.FIRST) claims.push([chosen, rid]);
    // Scoped CIDR rules (issue 15) take back their ids too, when the driver reads them back.
    for (const se of e.scoped ?? []) {
      const pair = rules?.scoped?.find((p) => p.key === scopeRuleKey(se.scope));
      const kind = se.deny ? "deny" : "allow";
      if (pair !== undefined && se.ruleId >= RULE_ID.FIRST && (kind === "deny" ? pair.deny : pair.allow) !== null) claims.push([cidrRuleKey(kind, `${key} ${pair.key}`), se.ruleId]);
    }
  }
  state.ruleIds.restore(claims, hits.filter((h) => h.packets > 0n).map((h) => h.ruleId), learnedClaims);
}

/** Zeroes every rule counter of an attachment (the fallback when its ids cannot be restored). */
export async function zeroAllRuleHits(filter: Filter, id: string): Promise<void> {
  await filter.clearRuleHits(id, Array.from({ length: HITS_CAP }, (_, i) => i));
}
