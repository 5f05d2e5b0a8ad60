import { formatCidr, formatRuleScope, type RuleScope } from "@netfence/proto/parse";
import type { AttachmentPolicy, CidrRule, DnsPolicy, DomainRule, FilterMode, PolicyCommand } from "../policy/policy.js";
import type { RuleIndex } from "../policy/rule-index.js";

/** CIDRs shown per side of a diff; the rest are counted. */
const SHOWN = 3;

/** The policy as it was before a command (the parts a summary compares against). */
export interface PolicyBefore {
  readonly mode: FilterMode;
  readonly audit: boolean;
  /** The rule index object itself: a BulkUpdate replaces it (never mutates it), so it stays as it was. */
  readonly rules: RuleIndex;
  readonly dns: DnsPolicy;
}

/**
 * A compact, human-readable description of what `command` changes relative to `before`, for the
 * audit trail: "mode allowlist→denylist", "allow +3/-1 (+10.0.0.0/8, +…)", "dns rules changed".
 * A BulkUpdate is diffed between the old rule index and `after`, the index it installed (keys are
 * canonical prefix text already: no CIDR is formatted), O(old + new rules); without `after` the
 * command's CIDRs are formatted. Run off the command's critical path.
 */
export function commandSummary(command: PolicyCommand, before: PolicyBefore, after?: RuleIndex): string {
  switch (command.kind) {
    case "set-mode":
      return `mode ${arrow(before.mode, command.mode)}`;
    case "allow-cidr":
      return `allow +${formatCidr(command.rule.cidr)}${scoped(command.rule)}${ttl(command.rule)}`;
    case "deny-cidr":
      return `deny +${formatCidr(command.rule.cidr)}${scoped(command.rule)}${ttl(command.rule)}`;
    case "remove-cidr":
      return `remove ${formatCidr(command.cidr)}`;
    case "set-dns-mode":
      return `dns mode ${arrow(before.dns.mode, command.mode)}`;
    case "allow-domain":
      return `allow domain +${domain(command.rule)}${scoped(command.rule)}`;
    case "deny-domain":
      return `deny domain +${domain(command.rule)}`;
    case "remove-domain":
      return `remove domain ${command.domain}`;
    case "bulk-update": {
      if (after !== undefined) {
        const parts = [`mode ${arrow(before.mode, command.mode)}`, `allow ${indexDiff(before.rules, after, "allow")}`, `deny ${indexDiff(before.rules, after, "deny")}`];
        parts.push(command.dns === null ? "dns rules kept" : dnsDiff(before.dns, command.dns));
        if (command.established === "keep") parts.push("established keep");
        return parts.join("; ");
      }
      const beforeAllow: string[] = [];
      const beforeDeny: string[] = [];
      for (const [key, r] of before.rules) {
        if (r.allow !== null) beforeAllow.push(key);
        if (r.deny !== null) beforeDeny.push(key);
      }
      const parts = [`mode ${arrow(before.mode, command.mode)}`];
      parts.push(`allow ${diff(beforeAllow, command.allowCidrs.map((r) => formatCidr(r.cidr)))}`);
      parts.push(`deny ${diff(beforeDeny, command.denyCidrs.map((r) => formatCidr(r.cidr)))}`);
      parts.push(command.dns === null ? "dns rules kept" : dnsDiff(before.dns, command.dns));
      return parts.join("; ");
    }
  }
}

/** The whole policy an attachment starts with (attach, restore, adopt). */
export function policySummary(p: AttachmentPolicy): string {
  const dns = p.dns.mode === "disabled" ? "dns disabled" : `dns ${p.dns.mode} (${p.dns.allowDomains.length} allow / ${p.dns.denyDomains.length} deny domains)`;
  const cidrs = (list: readonly CidrRule[]): string =>
    list.slice(0, SHOWN).map((r) => formatCidr(r.cidr)).join(", ") + (list.length > SHOWN ? ", …" : "");
  const allow = p.allowCidrs.length === 0 ? "" : ` [${cidrs(p.allowCidrs)}]`;
  const deny = p.denyCidrs.length === 0 ? "" : ` [${cidrs(p.denyCidrs)}]`;
  return `mode ${p.mode}${p.audit ? " (audit)" : ""}; allow ${p.allowCidrs.length}${allow}; deny ${p.denyCidrs.length}${deny}; ${dns}`;
}

function arrow(a: string, b: string): string {
  return a === b ? `${b} (unchanged)` : `${a}→${b}`;
}

/** " (tcp/443 users=web(33))" for a scoped rule (issue 15), "" for an unscoped one. */
function scoped(r: { readonly scope?: RuleScope }): string {
  return r.scope === undefined ? "" : ` (${formatRuleScope(r.scope)})`;
}

function ttl(r: CidrRule): string {
  return r.expiresAtMs === null ? "" : ` until ${new Date(r.expiresAtMs).toISOString()}`;
}

function domain(r: DomainRule): string {
  return r.includeSubdomains ? `*.${r.domain}` : r.domain;
}

function diff(before: readonly string[], after: readonly string[]): string {
  const was = new Set(before);
  const now = new Set(after);
  const added = after.filter((k) => !was.has(k));
  const removed = before.filter((k) => !now.has(k));
  const show = [...added.slice(0, SHOWN).map((k) => `+${k}`), ...removed.slice(0, SHOWN).map((k) => `-${k}`)];
  const more = added.length + removed.length > show.length ? ", …" : "";
  return `+${added.length}/-${removed.length}${show.length > 0 ? ` (${show.join(", ")}${more})` : ""}`;
}

/** Prefixes with an `side` rule in `after` but not `before` (+) and the other way round (-). */
function indexDiff(before: RuleIndex, after: RuleIndex, side: "allow" | "deny"): string {
  const added: string[] = [];
  const removed: string[] = [];
  let nAdded = 0;
  let nRemoved = 0;
  for (const [key, r] of after) {
    if (r[side] === null || (before.get(key)?.[side] ?? null) !== null) continue;
    if (nAdded++ < SHOWN) added.push(`+${key}`);
  }
  for (const [key, r] of before) {
    if (r[side] === null || (after.get(key)?.[side] ?? null) !== null) continue;
    if (nRemoved++ < SHOWN) removed.push(`-${key}`);
  }
  const show = [...added, ...removed];
  const more = nAdded + nRemoved > show.length ? ", …" : "";
  return `+${nAdded}/-${nRemoved}${show.length > 0 ? ` (${show.join(", ")}${more})` : ""}`;
}

function dnsDiff(before: DnsPolicy, after: DnsPolicy): string {
  const key = (r: DomainRule): string => domain(r);
  const same = (a: readonly DomainRule[], b: readonly DomainRule[]): boolean => {
    if (a.length !== b.length) return false;
    const s = new Set(a.map(key));
    return b.every((r) => s.has(key(r)));
  };
  const rulesSame = same(before.allowDomains, after.allowDomains) && same(before.denyDomains, after.denyDomains);
  const mode = before.mode === after.mode ? "" : ` mode ${before.mode}→${after.mode};`;
  if (rulesSame && mode === "") return "dns unchanged";
  return `dns${mode} ${rulesSame ? "rules unchanged" : `rules changed (${after.allowDomains.length} allow / ${after.denyDomains.length} deny domains)`}`;
}
