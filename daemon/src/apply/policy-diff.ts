import { formatCidr, scopeKey } from "@netfence/proto/parse";
import type { AttachmentPolicy, CidrRule, DomainRule } from "../policy/policy.js";
import type { AttachmentView } from "../attachments/attachment-view.js";
import type { DesiredAttachment } from "./policy-file.js";
import { scopeText } from "./rule-scope-yaml.js";

/**
 * The difference between the policy file and what is in force: attachments added and removed,
 * and per kept attachment its mode, audit, established, DNS and the rules added and removed.
 * Rules are compared as (address, scope): the same rule written twice, or in another order, is
 * no change; an apply of the file that is in force is "no changes".
 */

export interface CurrentAttachment {
  readonly view: AttachmentView;
  readonly policy: AttachmentPolicy;
}

export interface PolicyChange {
  readonly desired: DesiredAttachment;
  readonly before: AttachmentPolicy;
  readonly lines: readonly string[];
}

export interface ApplyPlan {
  readonly add: readonly DesiredAttachment[];
  readonly change: readonly PolicyChange[];
  readonly remove: readonly CurrentAttachment[];
  /** Human-readable, one line per change; empty = nothing to do. */
  readonly lines: readonly string[];
}

export function targetText(d: DesiredAttachment): string {
  return d.target.kind === "cgroup" ? `cgroup ${d.target.path}` : `interface ${d.target.name} (${d.target.direction})`;
}

const cidrKey = (r: CidrRule): string => `${formatCidr(r.cidr)}${scopeKey(r.scope) === "" ? "" : " " + scopeKey(r.scope)}`;
const cidrLabel = (r: CidrRule): string => `${formatCidr(r.cidr)}${scopeText(r.scope)}`;
const domainKey = (r: DomainRule): string => `${r.includeSubdomains ? "*." : ""}${r.domain}${scopeKey(r.scope) === "" ? "" : " " + scopeKey(r.scope)}`;
const domainLabel = (r: DomainRule): string => `${r.includeSubdomains ? "*." : ""}${r.domain}${scopeText(r.scope)}`;

function ruleLines<T>(what: string, before: readonly T[], after: readonly T[], key: (r: T) => string, label: (r: T) => string): string[] {
  const b = new Map(before.map((r) => [key(r), r]));
  const a = new Map(after.map((r) => [key(r), r]));
  const out: string[] = [];
  for (const [k, r] of a) if (!b.has(k)) out.push(`    + ${what} ${label(r)}`);
  for (const [k, r] of b) if (!a.has(k)) out.push(`    - ${what} ${label(r)}`);
  return out;
}

/** The lines describing how `after` differs from `before`; empty when they are the same policy. */
export function policyLines(before: AttachmentPolicy, after: AttachmentPolicy): string[] {
  const out: string[] = [];
  if (before.mode !== after.mode) out.push(`    mode ${before.mode} -> ${after.mode}`);
  if (before.audit !== after.audit) out.push(`    audit ${before.audit ? "on" : "off"} -> ${after.audit ? "on" : "off"}`);
  const eb = before.established ?? "sever";
  const ea = after.established ?? "sever";
  if (eb !== ea) out.push(`    established ${eb} -> ${ea}`);
  if (before.dns.mode !== after.dns.mode) out.push(`    dns mode ${before.dns.mode} -> ${after.dns.mode}`);
  if (before.dns.upstreams.join(",") !== after.dns.upstreams.join(",")) {
    out.push(`    dns upstreams [${before.dns.upstreams.join(", ")}] -> [${after.dns.upstreams.join(", ")}]`);
  }
  out.push(...ruleLines("allow cidr", before.allowCidrs, after.allowCidrs, cidrKey, cidrLabel));
  out.push(...ruleLines("deny cidr", before.denyCidrs, after.denyCidrs, cidrKey, cidrLabel));
  out.push(...ruleLines("allow domain", before.dns.allowDomains, after.dns.allowDomains, domainKey, domainLabel));
  out.push(...ruleLines("deny domain", before.dns.denyDomains, after.dns.denyDomains, domainKey, domainLabel));
  return out;
}

/**
 * The plan from the desired attachments and the current ones (`managed`: those an earlier apply
 * created). An attachment keeps its name and its target: a file that moves a name to another
 * target is refused (remove it and add one under a new name), as is a name already used by an
 * attachment the file does not own (`netfenced attach`).
 */
export function planApply(desired: readonly DesiredAttachment[], managed: ReadonlyMap<string, CurrentAttachment>, foreignIds: ReadonlySet<string>): ApplyPlan {
  const add: DesiredAttachment[] = [];
  const change: PolicyChange[] = [];
  const lines: string[] = [];
  const problems: string[] = [];
  for (const d of desired) {
    const cur = managed.get(d.name);
    if (cur === undefined) {
      if (foreignIds.has(d.name)) problems.push(`${d.where}: the id "${d.name}" is taken by an attachment the policy file did not create (netfenced attach): detach it or choose another name`);
      add.push(d);
      lines.push(`+ attachment ${d.name} (${targetText(d)}): mode ${d.policy.mode}, ${d.policy.allowCidrs.length + d.policy.dns.allowDomains.length} allow / ${d.policy.denyCidrs.length + d.policy.dns.denyDomains.length} deny rules`);
      continue;
    }
    const same = d.target.kind === cur.view.type && (d.target.kind === "cgroup" ? sameCgroup(d.target.path, cur.view.target) : d.target.name === cur.view.target && d.target.direction === (cur.view.metadata["netfence.direction"] ?? "ingress"));
    if (!same) {
      problems.push(`${d.targetWhere}: attachment "${d.name}" is attached to ${cur.view.target}; a name keeps its target (remove it from the file and add the new target under another name)`);
      continue;
    }
    const pl = policyLines(cur.policy, d.policy);
    if (pl.length > 0) {
      change.push({ desired: d, before: cur.policy, lines: pl });
      lines.push(`~ attachment ${d.name} (${targetText(d)})`, ...pl);
    }
  }
  const names = new Set(desired.map((d) => d.name));
  const remove = [...managed.values()].filter((c) => !names.has(c.view.id));
  for (const c of remove) lines.push(`- attachment ${c.view.id} (${c.view.type} ${c.view.target})`);
  if (problems.length > 0) throw new PlanError(problems);
  return { add, change, remove, lines };
}

export class PlanError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join("\n"));
  }
}

/** The same cgroup: paths compared without trailing slashes (the view holds the path as resolved). */
function sameCgroup(a: string, viewTarget: string): boolean {
  const norm = (s: string): string => s.replace(/\/+$/, "");
  return norm(a) === norm(viewTarget) || norm(viewTarget).endsWith("/" + norm(a).replace(/^\/+/, ""));
}
