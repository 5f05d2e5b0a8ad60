import type { PolicySpec } from "@netfence/control-plane-sdk";

/**
 * A parsed, validated netfence-cp policy file. Rules are tried in file order and the FIRST rule
 * whose `match` labels all equal the attachment's labels wins (firewall-style: predictable, no
 * merging surprises); no rule matching → `defaults`.
 *
 * An attachment's labels are the daemon's metadata overlaid with the attachment's own metadata
 * (attachment wins), so a rule can select on `region: eu` set once per daemon.
 */
export interface PolicyRule {
  readonly name: string;
  /** label → accepted values (one of). Empty = matches every attachment. */
  readonly match: Readonly<Record<string, readonly string[]>>;
  readonly policy: PolicySpec;
  /** DNS proxy mode only: names netfence-cp answers itself (exact name → addresses). */
  readonly answers: ReadonlyMap<string, readonly string[]>;
}

export interface PolicyFile {
  readonly defaults: PolicySpec;
  readonly defaultAnswers: ReadonlyMap<string, readonly string[]>;
  readonly rules: readonly PolicyRule[];
}

/** Safe when nothing matches: no traffic, DNS not filtered (nothing resolvable is reachable anyway). */
export const BUILTIN_DEFAULT_POLICY: PolicySpec = { mode: "block-all", dns: { mode: "disabled" } };

export interface Selection {
  /** The matching rule's name, or null when `defaults` applied. */
  readonly rule: string | null;
  readonly policy: PolicySpec;
  readonly answers: ReadonlyMap<string, readonly string[]>;
}

export function selectPolicy(file: PolicyFile, labels: Readonly<Record<string, string>>): Selection {
  for (const rule of file.rules) {
    if (ruleMatches(rule, labels)) return { rule: rule.name, policy: rule.policy, answers: rule.answers };
  }
  return { rule: null, policy: file.defaults, answers: file.defaultAnswers };
}

function ruleMatches(rule: PolicyRule, labels: Readonly<Record<string, string>>): boolean {
  for (const [key, values] of Object.entries(rule.match)) {
    const v = labels[key];
    if (v === undefined || !values.includes(v)) return false;
  }
  return true;
}

export function labelsOf(daemonMetadata: Readonly<Record<string, string>>, attachmentMetadata: Readonly<Record<string, string>>): Record<string, string> {
  return { ...daemonMetadata, ...attachmentMetadata };
}
