import { parsePolicyFile, PolicyFileError } from "../policy-file/parse-policy-file.js";
import { BUILTIN_DEFAULT_POLICY, type PolicyFile, type PolicyRule } from "../policy-file/policy-file.js";

/**
 * One policy of the fleet store: a rule of the YAML file (selector + rules) with a name, a
 * priority and a version. `rules` holds {mode, allow, deny, dns} exactly as a YAML rule does,
 * so both modes validate and select with the same code (parsePolicyFile, selectPolicy).
 */
export interface PolicyRecord {
  readonly name: string;
  readonly priority: number;
  /** label → accepted values; {} matches every attachment. */
  readonly selector: Readonly<Record<string, readonly string[]>>;
  readonly rules: Readonly<Record<string, unknown>>;
  readonly version: number;
}

/** The version string a daemon echoes for a policy: "name@version"; the built-in defaults are "defaults@0". */
export function policyVersionOf(name: string, version: number): string {
  return `${name}@${version}`;
}
export const DEFAULTS_VERSION = policyVersionOf("defaults", 0);

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const RULE_KEYS = new Set(["mode", "allow", "deny", "dns"]);

/**
 * Checks one policy as the YAML file's parser would (same CIDR/domain/upstream validation) and
 * returns the rule; throws PolicyFileError listing every problem.
 */
export function validatePolicy(p: Omit<PolicyRecord, "version">): PolicyRule {
  const problems: string[] = [];
  if (!NAME.test(p.name)) problems.push(`policy name "${p.name}" must be 1-63 characters of letters, digits, "_", "." or "-", starting with a letter or digit`);
  if (!Number.isInteger(p.priority) || p.priority < -1_000_000 || p.priority > 1_000_000) problems.push(`policy "${p.name}": priority must be an integer in [-1000000, 1000000]`);
  if (typeof p.rules !== "object" || p.rules === null || Array.isArray(p.rules)) problems.push(`policy "${p.name}": rules must be an object with mode and optional allow, deny, dns`);
  else for (const k of Object.keys(p.rules)) if (!RULE_KEYS.has(k)) problems.push(`policy "${p.name}": unknown key "${k}"; expected one of mode, allow, deny, dns`);
  if (typeof p.selector !== "object" || p.selector === null || Array.isArray(p.selector)) problems.push(`policy "${p.name}": selector must be an object of label: [values]`);
  if (problems.length > 0) throw new PolicyFileError(problems);
  const file = parseSet([{ ...p, version: 0 }], `policy "${p.name}"`);
  return file.rules[0]!;
}

/**
 * The policy set as the PolicyFile the shared PolicyController selects from: rules by ascending
 * priority then name, each policy's PolicySpec carrying its version; nothing matching → the
 * built-in block-all defaults (version "defaults@0").
 */
export function toPolicyFile(records: readonly PolicyRecord[]): PolicyFile {
  const sorted = [...records].sort((a, b) => a.priority - b.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return parseSet(sorted, "policy store");
}

function parseSet(records: readonly PolicyRecord[], where: string): PolicyFile {
  // JSON is YAML: the store's records become exactly the document a YAML file would be.
  const doc = { rules: records.map((r) => ({ name: r.name, match: r.selector, ...r.rules })) };
  let file: PolicyFile;
  try {
    file = parsePolicyFile(JSON.stringify(doc), where);
  } catch (err) {
    if (err instanceof PolicyFileError) throw new PolicyFileError(err.problems.map((m) => m.replace(/^([^:]*):\d+:\d+: /, "$1: ")));
    throw err;
  }
  const versions = new Map(records.map((r) => [r.name, policyVersionOf(r.name, r.version)]));
  return {
    defaults: { ...BUILTIN_DEFAULT_POLICY, version: DEFAULTS_VERSION },
    defaultAnswers: file.defaultAnswers,
    rules: file.rules.map((rule) => ({ ...rule, policy: { ...rule.policy, version: versions.get(rule.name)! } })),
  };
}
