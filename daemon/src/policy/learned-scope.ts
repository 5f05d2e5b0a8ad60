import { isUnscoped, type RuleScope } from "@netfence/proto/parse";
import type { DnsPolicy } from "./policy.js";

/**
 * The scopes a DNS-learned address carries (issue 15): those of the domain allow rule that lets the
 * name through — the most specific one, as for its rule id (rule-ids.ts learnedRuleKey): the rule
 * naming the name itself, else the nearest parent rule that includes subdomains. null = unscoped (an
 * unscoped rule, or no allow rule at all: the DNS mode or the control plane let the name through),
 * as before scopes existed. Several rules for the one domain (a list may repeat it): every scope of
 * them, or unscoped as soon as one is. An address learned from two names carries the scopes of both
 * (compile.ts: one scoped entry per name).
 */

interface DomainScopes {
  /** Scopes of every allow rule of this domain; null = one is unscoped. */
  exact: RuleScope[] | null;
  /** Scopes of the rules that include subdomains; undefined = none does; null = one unscoped does. */
  sub: RuleScope[] | null | undefined;
}

/** Per (immutable) DNS policy: its scoped domains' index, or null when no allow rule is scoped. */
const cache = new WeakMap<DnsPolicy, Map<string, DomainScopes> | null>();

function add(list: RuleScope[] | null | undefined, scope: RuleScope | undefined): RuleScope[] | null {
  if (list === null || isUnscoped(scope)) return null;
  return [...(list ?? []), scope!];
}

function indexOf(dns: DnsPolicy): Map<string, DomainScopes> | null {
  let m = cache.get(dns);
  if (m === undefined) {
    if (!dnsHasScopes(dns)) {
      cache.set(dns, null);
      return null;
    }
    m = new Map();
    for (const r of dns.allowDomains) {
      const cur = m.get(r.domain);
      const exact = add(cur === undefined ? [] : cur.exact, r.scope);
      const sub = r.includeSubdomains ? add(cur?.sub, r.scope) : cur?.sub;
      m.set(r.domain, { exact, sub });
    }
    cache.set(dns, m);
  }
  return m;
}

/** True when some allow-domain rule of the policy is scoped (rare: without, nothing is looked up). */
export function dnsHasScopes(dns: DnsPolicy): boolean {
  return dns.allowDomains.some((r) => !isUnscoped(r.scope));
}

export function learnedScopes(dns: DnsPolicy, name: string): readonly RuleScope[] | null {
  const index = indexOf(dns);
  if (index === null) return null;
  let q = name.toLowerCase();
  if (q.endsWith(".")) q = q.slice(0, -1);
  const exact = index.get(q);
  if (exact !== undefined) return exact.exact;
  for (let dot = q.indexOf("."); dot !== -1; dot = q.indexOf(".", dot + 1)) {
    const parent = index.get(q.slice(dot + 1));
    if (parent !== undefined && parent.sub !== undefined) return parent.sub;
  }
  return null;
}

/** A stable text of a name's scopes (compare before/after a DNS rule change). */
export function learnedScopesKey(scopes: readonly RuleScope[] | null): string {
  return scopes === null ? "" : JSON.stringify(scopes.map((s) => [s.protocols, s.ports, s.users.map((p) => p.id), s.groups.map((p) => p.id)]));
}
