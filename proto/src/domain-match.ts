import type { DnsModeName } from "./modes.js";
import { canonicalQueryName, type DomainRule } from "./parse/domain.js";

/**
 * Domain rule matching, the contract's semantics (the daemon's DNS servers and control planes
 * deciding in proxy mode both use it). A rule matches its exact name, or with `includeSubdomains` the name and
 * every name below it. Among matching rules the most specific wins — the one whose domain has the
 * most labels, i.e. the longest matching suffix of the query name — and at equal specificity deny
 * beats allow (an exact rule and a subtree rule on the same name are equally specific).
 *
 * Rules are compiled once per DnsPolicy object into one Map from domain to a bit set of
 * (allow/deny × exact/subtree); a decision walks the query's label suffixes from the full name
 * up, so its cost depends on the number of labels, not on the number of rules.
 */

export type DomainVerdict = "allow" | "deny" | "none";

/** What rule matching reads of a DNS policy (immutable: compiled rules are cached per object). */
export interface DomainRules {
  readonly allowDomains: readonly DomainRule[];
  readonly denyDomains: readonly DomainRule[];
}

/** Domain rules with the DNS mode that says what their verdicts mean. */
export interface DnsRuleSet extends DomainRules {
  readonly mode: DnsModeName;
}

const EXACT_ALLOW = 1;
const EXACT_DENY = 2;
const SUBTREE_ALLOW = 4;
const SUBTREE_DENY = 8;

export interface CompiledDomainRules {
  /** domain → bit set of EXACT_ALLOW | EXACT_DENY | SUBTREE_ALLOW | SUBTREE_DENY */
  readonly byName: ReadonlyMap<string, number>;
  readonly ruleCount: number;
  /** Verdicts of recently asked canonical names (bounded; the rules are immutable, so never stale). */
  readonly verdicts: Map<string, DomainVerdict>;
}

/** Names whose verdict is remembered per compiled policy; the cache is simply emptied when full. */
export const VERDICT_CACHE_SIZE = 16_384;

const compiledCache = new WeakMap<DomainRules, CompiledDomainRules>();

function addRule(byName: Map<string, number>, rule: DomainRule, allow: boolean): void {
  const name = canonicalQueryName(rule.domain);
  const bit = rule.includeSubdomains ? (allow ? SUBTREE_ALLOW : SUBTREE_DENY) : allow ? EXACT_ALLOW : EXACT_DENY;
  byName.set(name, (byName.get(name) ?? 0) | bit);
}

/** Compiles a policy's domain rules (cached per policy object, which is immutable). */
export function compileDomainRules(dns: DomainRules): CompiledDomainRules {
  const cached = compiledCache.get(dns);
  if (cached !== undefined) return cached;
  const byName = new Map<string, number>();
  for (const rule of dns.allowDomains) addRule(byName, rule, true);
  for (const rule of dns.denyDomains) addRule(byName, rule, false);
  const compiled: CompiledDomainRules = { byName, ruleCount: dns.allowDomains.length + dns.denyDomains.length, verdicts: new Map() };
  compiledCache.set(dns, compiled);
  return compiled;
}

/** The verdict of the most specific matching rule for `name` (any case, trailing dot ignored). */
export function matchDomain(rules: CompiledDomainRules, name: string): DomainVerdict {
  if (rules.byName.size === 0) return "none";
  // Keys are canonical names without a trailing dot, so a raw hit is the canonical verdict and
  // the common case (a canonical name asked again) skips canonicalising.
  const hit = rules.verdicts.get(name);
  if (hit !== undefined) return hit;
  const query = canonicalQueryName(name);
  if (query !== name) {
    const cached = rules.verdicts.get(query);
    if (cached !== undefined) return cached;
  }
  const verdict = walkSuffixes(rules.byName, query);
  if (query.endsWith(".")) return verdict; // "a.." is not a name; never let it become a key
  if (rules.verdicts.size >= VERDICT_CACHE_SIZE) rules.verdicts.clear();
  rules.verdicts.set(query, verdict);
  return verdict;
}

/** The uncached decision: the full name, then each proper suffix, most specific first. */
export function walkSuffixes(byName: ReadonlyMap<string, number>, query: string): DomainVerdict {
  if (query.length === 0) return "none";
  // The full name: exact and subtree rules both apply and are equally specific.
  const own = byName.get(query);
  if (own !== undefined) {
    if (own & (EXACT_DENY | SUBTREE_DENY)) return "deny";
    if (own & (EXACT_ALLOW | SUBTREE_ALLOW)) return "allow";
  }
  // Proper suffixes: only subtree rules apply.
  let dot = query.indexOf(".");
  while (dot !== -1) {
    const bits = byName.get(query.slice(dot + 1));
    if (bits !== undefined) {
      if (bits & SUBTREE_DENY) return "deny";
      if (bits & SUBTREE_ALLOW) return "allow";
    }
    dot = query.indexOf(".", dot + 1);
  }
  return "none";
}

/**
 * Whether a name may be resolved under this DNS policy (what the attachment manager and the DNS
 * server ask): disabled → yes; allowlist → only when the best match is an allow rule;
 * denylist → unless the best match is a deny rule; proxy → yes (the control plane decides per query).
 */
export function nameAllowed(dns: DnsRuleSet, name: string): boolean {
  switch (dns.mode) {
    case "disabled":
    case "proxy":
      return true;
    case "allowlist":
      return matchDomain(compileDomainRules(dns), name) === "allow";
    case "denylist":
      return matchDomain(compileDomainRules(dns), name) !== "deny";
  }
}
