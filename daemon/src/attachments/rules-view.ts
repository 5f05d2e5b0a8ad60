import { formatCidr, type RuleScope } from "@netfence/proto/parse";
import type { FilterMode, PinnedAttachment, RuleHitCount } from "../datapath/filter.js";
import { RULE_ID } from "../datapath/hits-wire.js";
import type { PolicyState } from "../policy/policy-state.js";
import { cidrRuleKey, domainRuleKey } from "../policy/rule-ids.js";
import { scopeText } from "../policy/scope-text.js";
import type { CidrRule } from "../policy/policy.js";

/**
 * `netfenced rules` / DaemonService.ListRules: an attachment's effective policy as the KERNEL holds
 * it (its active generation read back from the maps, the reader orphan adoption uses) joined with
 * the daemon's rule table (what each rule id means) and the per-rule kernel hit counters.
 */

export type RuleKind = "cidr" | "domain" | "dns" | "reserved" | "overflow" | "unknown";

export interface RuleView {
  readonly ruleId: number;
  /** "allow-cidr 10.0.0.0/8", "allow-domain *.example.com", "dns-proxy", "default-deny", … */
  readonly rule: string;
  readonly kind: RuleKind;
  readonly action: "allow" | "deny";
  /** Active-generation kernel entries carrying this id, and the first PREFIXES_SHOWN of them. */
  readonly kernelEntries: number;
  readonly prefixes: readonly string[];
  readonly packets: bigint;
  /** Wall-clock ms of the last hit; 0 = never. */
  readonly lastHitMs: number;
  /** The rule's TTL deadline (ms), null = none or not applicable. */
  readonly expiresAtMs: number | null;
  /** False: the kernel carries an id the daemon's table does not know (drift). */
  readonly inDaemon: boolean;
  /** What the rule is limited to (issue 15): "tcp/443 users web(33)"; "" = unscoped. */
  readonly scope: string;
}

export interface RulesView {
  readonly id: string;
  readonly mode: FilterMode;
  readonly audit: boolean;
  readonly rules: readonly RuleView[];
  /** Policy rules the kernel counts separately; overflowedRules more share the overflow counter. */
  readonly capacity: number;
  readonly overflowedRules: number;
}

export const PREFIXES_SHOWN = 32;

/** The kernel's reserved rules (enum nf_rule_reserved): decisions made without a policy entry. */
const RESERVED: ReadonlyMap<number, { rule: string; action: "allow" | "deny" }> = new Map([
  [RULE_ID.NONE, { rule: "unattributed", action: "allow" }],
  [RULE_ID.DEFAULT_DENY, { rule: "default-deny", action: "deny" }],
  [RULE_ID.DEFAULT_ALLOW, { rule: "default-allow", action: "allow" }],
  [RULE_ID.BLOCK_ALL, { rule: "block-all", action: "deny" }],
  [RULE_ID.DISABLED, { rule: "disabled", action: "allow" }],
  [RULE_ID.PROTECTED, { rule: "protected", action: "allow" }],
  [RULE_ID.PROTECTED_DENY, { rule: "protected-deny", action: "deny" }],
  [RULE_ID.ALWAYS_ALLOWED, { rule: "always-allowed", action: "allow" }],
  [RULE_ID.GUARD, { rule: "guard", action: "deny" }],
  [RULE_ID.LOCAL_CLOSED, { rule: "local-closed", action: "deny" }],
  [RULE_ID.KEPT, { rule: "kept-established", action: "allow" }],
  [RULE_ID.POLICY_DEPTH, { rule: "policy-depth", action: "deny" }],
]);

/** The reserved rule a mode decides unmatched packets with (always listed). */
const MODE_DEFAULT: Record<FilterMode, number> = {
  allowlist: RULE_ID.DEFAULT_DENY,
  denylist: RULE_ID.DEFAULT_ALLOW,
  "block-all": RULE_ID.BLOCK_ALL,
  disabled: RULE_ID.DISABLED,
};

/**
 * The scoped rule pairs of a prefix (issue 15, policy/scoped-rules.ts: one allow/deny pair per
 * distinct scope, keyed by scopeKey). Read structurally so this view works before and after the
 * rule index carries them.
 */
interface ScopedPair {
  readonly key: string;
  readonly scope: RuleScope;
  readonly allow: CidrRule | null;
  readonly deny: CidrRule | null;
}
const scopedPairs = (r: unknown): readonly ScopedPair[] => (r as { scoped?: readonly ScopedPair[] } | undefined)?.scoped ?? [];

type KeyView = { rule: string; kind: RuleKind; action: "allow" | "deny"; expiresAtMs: number | null; scope: string };

/** What a rule key of the daemon's table means (rule-ids.ts keys; a scoped CIDR rule's key is "<kind>-cidr <prefix> <scope key>"). */
function describeKey(key: string, state: PolicyState): KeyView {
  const space = key.indexOf(" ");
  const head = space === -1 ? key : key.slice(0, space);
  const rest = space === -1 ? "" : key.slice(space + 1);
  if (head === "allow-cidr" || head === "deny-cidr") {
    const action = head === "allow-cidr" ? "allow" : "deny";
    const cut = rest.indexOf(" ");
    const prefix = cut === -1 ? rest : rest.slice(0, cut);
    const r = state.rules.get(prefix);
    if (cut === -1) {
      const cr = action === "allow" ? r?.allow : r?.deny;
      return { rule: key, kind: "cidr", action, expiresAtMs: cr?.expiresAtMs ?? null, scope: "" };
    }
    const sk = rest.slice(cut + 1);
    const pair = scopedPairs(r).find((p) => p.key === sk);
    const text = pair === undefined ? sk : scopeText(pair.scope);
    const cr = action === "allow" ? pair?.allow : pair?.deny;
    return { rule: `${head} ${prefix} ${text}${pair === undefined ? " (removed)" : ""}`, kind: "cidr", action, expiresAtMs: cr?.expiresAtMs ?? null, scope: text };
  }
  if (head === "allow-domain") {
    const d = state.dns.allowDomains.find((x) => x.domain === rest);
    const scope = scopeText(d?.scope);
    const name = `allow-domain ${d?.includeSubdomains === true ? "*." : ""}${rest}${scope ? ` ${scope}` : ""}`;
    return { rule: `${name}${d === undefined ? " (removed; still holds learned addresses)" : ""}`, kind: "domain", action: "allow", expiresAtMs: null, scope };
  }
  return { rule: key, kind: "dns", action: "allow", expiresAtMs: null, scope: "" };
}

/** A rule id's text for an attachment (heartbeats): reserved, overflow, a rule key's, or unknown. */
export function ruleTextOf(ruleId: number, state: PolicyState): string {
  const r = RESERVED.get(ruleId);
  if (r !== undefined) return r.rule;
  if (ruleId === state.ruleIds.overflowId) return "overflow";
  const key = state.ruleIds.keyOf(ruleId);
  return key === undefined ? `unknown rule id ${ruleId}` : describeKey(key, state).rule;
}

/** Every key the daemon's current policy holds, so rules never hit (or shadowed) are listed too. */
function policyKeys(state: PolicyState): string[] {
  const keys: string[] = [];
  for (const [prefix, r] of state.rules) {
    if (r.allow !== null) keys.push(cidrRuleKey("allow", prefix));
    if (r.deny !== null) keys.push(cidrRuleKey("deny", prefix));
    for (const p of scopedPairs(r)) {
      if (p.allow !== null) keys.push(cidrRuleKey("allow", `${prefix} ${p.key}`));
      if (p.deny !== null) keys.push(cidrRuleKey("deny", `${prefix} ${p.key}`));
    }
  }
  for (const d of state.dns.allowDomains) keys.push(domainRuleKey(d.domain));
  return keys;
}

export function buildRulesView(id: string, kernel: PinnedAttachment, hits: readonly RuleHitCount[], state: PolicyState): RulesView {
  const ids = state.ruleIds;
  for (const key of policyKeys(state)) ids.idFor(key);
  const byId = new Map<number, { n: number; prefixes: string[] }>();
  for (const e of kernel.policy.entries) {
    const rid = e.ruleId ?? RULE_ID.NONE;
    let g = byId.get(rid);
    if (g === undefined) byId.set(rid, (g = { n: 0, prefixes: [] }));
    g.n++;
    if (g.prefixes.length < PREFIXES_SHOWN) g.prefixes.push(formatCidr(e.cidr));
  }
  const hitOf = new Map(hits.map((h) => [h.ruleId, h]));
  const out = new Map<number, RuleView>();
  const add = (ruleId: number, d: KeyView, inDaemon: boolean): void => {
    const g = byId.get(ruleId);
    const h = hitOf.get(ruleId);
    out.set(ruleId, { ruleId, ...d, kernelEntries: g?.n ?? 0, prefixes: g?.prefixes ?? [], packets: h?.packets ?? 0n, lastHitMs: h?.lastHitMs ?? 0, inDaemon });
  };
  let overflowed = 0;
  for (const [key, rid] of ids.entries()) {
    if (rid === ids.overflowId) overflowed++;
    else add(rid, describeKey(key, state), true);
  }
  for (const [rid, r] of RESERVED) {
    if (rid === MODE_DEFAULT[kernel.mode] || (hitOf.get(rid)?.packets ?? 0n) > 0n || byId.has(rid)) add(rid, { ...r, kind: "reserved", expiresAtMs: null, scope: "" }, true);
  }
  if (overflowed > 0 || hitOf.has(ids.overflowId)) {
    add(ids.overflowId, { rule: `overflow (${overflowed} rules beyond the kernel's capacity)`, kind: "overflow", action: "allow", expiresAtMs: null, scope: "" }, true);
  }
  // Ids the kernel has (entries or counts) that the daemon's table does not know: drift, shown as such.
  for (const rid of new Set([...byId.keys(), ...hitOf.keys()])) {
    if (!out.has(rid)) add(rid, { rule: `unknown rule id ${rid}`, kind: "unknown", action: "allow", expiresAtMs: null, scope: "" }, false);
  }
  return {
    id,
    mode: kernel.mode,
    audit: kernel.audit,
    rules: [...out.values()].sort((a, b) => a.ruleId - b.ruleId),
    capacity: ids.overflowId - RULE_ID.FIRST,
    overflowedRules: overflowed,
  };
}
