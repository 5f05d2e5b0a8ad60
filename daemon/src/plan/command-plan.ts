import { formatCidr, parseCidr, scopeKey, type Cidr } from "@netfence/proto/parse";
import { nameAllowed } from "@netfence/proto/domain-match";
import type { FilterEntry, FilterMode, FilterPolicy } from "../policy/compiled.js";
import type { DnsPolicy, DomainRule, EstablishedMode, PolicyCommand } from "../policy/policy.js";
import { samePrefixRules, setCommandRule } from "../policy/scoped-rules.js";
import { dnsHasScopes, learnedScopes, learnedScopesKey } from "../policy/learned-scope.js";
import { indexRules, type PolicyState, type PrefixRules } from "../policy/policy-state.js";
import { RuleIndex } from "../policy/rule-index.js";
import type { LearnedGuard } from "./learned-guard.js";
import type { LearnedRecord } from "../policy/learned-addresses.js";
import { dropRefused, refusedLearned, type RefusedLearned } from "./learned-recheck.js";

/**
 * Turns one validated command into a plan: the single kernel operation that expresses it, and a
 * commit that updates the in-memory state. The manager runs the kernel operation first and
 * commits only if it succeeded, so a failed command changes nothing anywhere.
 *
 * A later command about the same prefix (or domain) replaces the earlier one: AllowCIDR of a
 * prefix that was denied turns it into an allow (the prefix is the key, as in the original).
 *
 * With a LearnedGuard, a command that can close addresses (a deny added, a rule removed, a
 * BulkUpdate) also removes the DNS-learned addresses the rebinding guard now refuses, in the
 * same kernel operation (then an atomic replace): a deny added later must not stay beaten by a
 * learned /32 it covers.
 */
export type KernelOp =
  | { readonly kind: "none" }
  | { readonly kind: "mode"; readonly mode: FilterMode; readonly audit: boolean }
  | { readonly kind: "upsert"; readonly entries: readonly FilterEntry[] }
  | { readonly kind: "delete"; readonly cidrs: readonly Cidr[] }
  | { readonly kind: "replace"; readonly policy: FilterPolicy };

export interface Plan {
  readonly op: KernelOp;
  /** Learned addresses this command removes because the rebinding guard now refuses them. */
  readonly refused?: readonly RefusedLearned[];
  /** The command restates what the attachment already has: nothing to write, to the kernel or the store. */
  readonly unchanged?: boolean;
  commit(): void;
}

/** Above this many touched prefixes one atomic replace is cheaper than entry updates. */
export const REPLACE_THRESHOLD = 256;

export function planCommand(state: PolicyState, command: PolicyCommand, nowMs: number, guard: LearnedGuard | null = null): Plan {
  switch (command.kind) {
    case "set-mode": {
      const audit = command.audit ?? state.audit;
      return {
        op: state.mode === command.mode && state.audit === audit ? { kind: "none" } : { kind: "mode", mode: command.mode, audit },
        commit: () => {
          state.mode = command.mode;
          state.audit = audit;
        },
      };
    }
    case "allow-cidr":
    case "deny-cidr": {
      const rule = command.rule;
      const key = formatCidr(rule.cidr);
      // (cidr, scope) names the rule: the one this command names is replaced, other scopes stay.
      const next: PrefixRules = setCommandRule(state.rules.get(key), command.kind === "allow-cidr" ? "allow" : "deny", rule);
      const plan = prefixPlan(state, key, next, nowMs, command.kind === "deny-cidr" ? guard : null);
      return {
        op: plan.op,
        refused: plan.refused,
        commit: () => {
          plan.commit();
          state.noteDeadline(rule.expiresAtMs);
        },
      };
    }
    case "remove-cidr": {
      const key = formatCidr(command.cidr);
      if (!state.rules.has(key)) return { op: { kind: "none" }, commit: () => undefined };
      return prefixPlan(state, key, null, nowMs, guard);
    }
    case "bulk-update": {
      const rules = new RuleIndex(indexRules(command.allowCidrs, command.denyCidrs));
      const dns = command.dns ?? state.dns;
      const established = command.established ?? "sever";
      const dropped = droppedNames(state, dns);
      const refused = guard === null ? [] : refusedLearned(state, guard, rules, nowMs).filter((r) => !dropped.has(r.name));
      const refusedDrop = refused.length === 0 ? null : dropRefused(refused);
      // The same policy again (a control plane that reconciles every attachment after its own
      // restart, a late SubscribedAck): no kernel write at all. TTL rules are never the same
      // again (their deadline is counted from now), so those still refresh.
      if (command.mode === state.mode && command.audit === state.audit && established === state.established && dropped.size === 0 && refused.length === 0 && sameDns(dns, state.dns) && sameRules(rules, state.rules)) {
        return { op: { kind: "none" }, unchanged: true, commit: () => undefined };
      }
      const drop = (l: LearnedRecord): boolean => dropped.has(l.name) || (refusedDrop !== null && refusedDrop(l));
      const policy = state.compile(nowMs, drop, rules, dns);
      return {
        op: { kind: "replace", policy: withKeep({ ...policy, mode: command.mode, audit: command.audit }, established) },
        refused,
        commit: () => {
          state.mode = command.mode;
          state.audit = command.audit;
          state.established = established;
          state.rules = rules;
          state.dns = dns;
          for (const n of dropped) state.learned.removeName(n);
          for (const r of refused) state.learned.remove(r.name, r.key);
          state.recomputeNextExpiry();
        },
      };
    }
    case "set-dns-mode":
      return dnsPlan(state, { ...state.dns, mode: command.mode }, nowMs);
    case "allow-domain":
    case "deny-domain": {
      const d = command.rule.domain;
      const allowDomains = withoutDomain(state.dns.allowDomains, d);
      const denyDomains = withoutDomain(state.dns.denyDomains, d);
      if (command.kind === "allow-domain") allowDomains.push(command.rule);
      else denyDomains.push(command.rule);
      return dnsPlan(state, { ...state.dns, allowDomains, denyDomains }, nowMs);
    }
    case "remove-domain":
      return dnsPlan(
        state,
        { ...state.dns, allowDomains: withoutDomain(state.dns.allowDomains, command.domain), denyDomains: withoutDomain(state.dns.denyDomains, command.domain) },
        nowMs,
      );
  }
}

function withoutDomain(rules: readonly DomainRule[], domain: string): DomainRule[] {
  return rules.filter((r) => r.domain !== domain);
}

function droppedNames(state: PolicyState, dns: DnsPolicy): Set<string> {
  return new Set(state.learned.names().filter((n) => !nameAllowed(dns, n)));
}

function prefixPlan(state: PolicyState, key: string, next: PrefixRules | null, nowMs: number, guard: LearnedGuard | null): Plan {
  const cidr = next?.cidr ?? state.rules.get(key)!.cidr;
  const override = { key, rules: next };
  const refused = guard === null ? [] : refusedLearned(state, guard, state.rules, nowMs, { scope: cidr, override });
  if (refused.length > 0) {
    // The change and the removal of what it now refuses, in one atomic replace (rare path).
    const policy = state.compile(nowMs, dropRefused(refused), state.rules.withOverride(override));
    return {
      op: { kind: "replace", policy },
      refused,
      commit: () => {
        if (next === null) state.rules.delete(key);
        else state.rules.set(key, next);
        for (const r of refused) state.learned.remove(r.name, r.key);
        state.recomputeNextExpiry();
      },
    };
  }
  const entry = state.entryFor(key, cidr, nowMs, { rules: next });
  return {
    op: entry === null ? { kind: "delete", cidrs: [cidr] } : { kind: "upsert", entries: [entry] },
    commit: () => {
      if (next === null) state.rules.delete(key);
      else state.rules.set(key, next);
    },
  };
}

/**
 * DNS rules changed: learned addresses of names no longer allowed go, the rest stay exactly — but
 * the addresses of names whose domain rule's scope changed (issue 15) are recompiled with the new scope.
 */
function dnsPlan(state: PolicyState, dns: DnsPolicy, nowMs: number): Plan {
  const dropped = droppedNames(state, dns);
  const rescoped = rescopedNames(state, dns, dropped);
  const commit = (): void => {
    state.dns = dns;
    for (const n of dropped) state.learned.removeName(n);
  };
  if (dropped.size === 0 && rescoped.length === 0) return { op: { kind: "none" }, commit };
  const affected = new Set<string>();
  for (const n of [...dropped, ...rescoped]) for (const k of state.learned.prefixesOf(n)) affected.add(k);
  if (affected.size > REPLACE_THRESHOLD || rescoped.length > 0) {
    // The entries must be compiled under the new DNS rules (their scopes): a full replace.
    return { op: { kind: "replace", policy: state.compile(nowMs, (l) => dropped.has(l.name), state.rules, dns) }, commit };
  }
  return { op: prefixesOp(state, affected, nowMs, dropped), commit };
}

/** Learned names still allowed whose scopes differ under `dns` (learned-scope.ts). */
function rescopedNames(state: PolicyState, dns: DnsPolicy, dropped: ReadonlySet<string>): string[] {
  if (!dnsHasScopes(dns) && !dnsHasScopes(state.dns)) return [];
  return state.learned.names().filter((n) => !dropped.has(n) && learnedScopesKey(learnedScopes(dns, n)) !== learnedScopesKey(learnedScopes(state.dns, n)));
}

function withKeep(policy: FilterPolicy, established: EstablishedMode): FilterPolicy {
  const { keepEstablished: _drop, ...rest } = policy;
  return established === "keep" ? { ...rest, keepEstablished: true } : rest;
}

/**
 * One kernel op recomputing `keys` (learned of `excluded` names left out): upsert or delete
 * alone when possible, an atomic replace when both are needed.
 */
export function prefixesOp(state: PolicyState, keys: Iterable<string>, nowMs: number, excluded: ReadonlySet<string>): KernelOp {
  const upserts: FilterEntry[] = [];
  const deletes: Cidr[] = [];
  for (const key of keys) {
    const cidr = state.rules.get(key)?.cidr ?? parseCidr(key);
    const learned = state.learned.forPrefix(key).filter((l) => !excluded.has(l.name));
    const entry = state.entryFor(key, cidr, nowMs, { learned });
    if (entry === null) deletes.push(cidr);
    else upserts.push(entry);
  }
  if (upserts.length > 0 && deletes.length > 0) return { kind: "replace", policy: state.compile(nowMs, (l) => excluded.has(l.name)) };
  if (deletes.length > 0) return { kind: "delete", cidrs: deletes };
  if (upserts.length > 0) return { kind: "upsert", entries: upserts };
  return { kind: "none" };
}

function sameRules(a: RuleIndex, b: RuleIndex): boolean {
  if (a.size !== b.size) return false;
  for (const [key, r] of a) {
    const o = b.get(key);
    if (o === undefined || !samePrefixRules(r, o)) return false;
  }
  return true;
}

function sameDns(a: DnsPolicy, b: DnsPolicy): boolean {
  if (a === b) return true;
  const sameDomains = (x: readonly DomainRule[], y: readonly DomainRule[]): boolean =>
    x.length === y.length &&
    x.every((d, i) => d.domain === y[i]!.domain && d.includeSubdomains === y[i]!.includeSubdomains && scopeKey(d.scope) === scopeKey(y[i]!.scope));
  return a.mode === b.mode && sameDomains(a.allowDomains, b.allowDomains) && sameDomains(a.denyDomains, b.denyDomains) &&
    a.upstreams.length === b.upstreams.length && a.upstreams.every((u, i) => u === b.upstreams[i]);
}
