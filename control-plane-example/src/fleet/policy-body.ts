import { PolicyFileError } from "../policy-file/parse-policy-file.js";

/**
 * A policy as an operator writes it (admin API body, `netfence-cp policy apply` file): one rule
 * of the YAML file plus a priority — {priority, match, mode, allow, deny, dns}. `match` values may
 * be one string or a list, as in the file. Returns the store's shape (selector lists, rules).
 */
export function policyBodyOf(name: string, b: Readonly<Record<string, unknown>>): {
  name: string;
  priority: number;
  selector: Record<string, string[]>;
  rules: Record<string, unknown>;
} {
  const problems: string[] = [];
  const priority = b["priority"] ?? 100;
  if (typeof priority !== "number") problems.push(`policy "${name}": priority must be a number`);
  const match = b["match"] ?? {};
  const selector: Record<string, string[]> = {};
  if (typeof match !== "object" || match === null || Array.isArray(match)) problems.push(`policy "${name}": match must be a mapping of label: value or [values]`);
  else {
    for (const [k, v] of Object.entries(match)) {
      if (typeof v === "string") selector[k] = [v];
      else if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === "string")) selector[k] = v as string[];
      else problems.push(`policy "${name}": match.${k} must be a string or a non-empty list of strings`);
    }
  }
  const rules: Record<string, unknown> = {};
  for (const k of ["mode", "allow", "deny", "dns"]) if (b[k] !== undefined) rules[k] = b[k];
  const known = new Set(["name", "priority", "match", "mode", "allow", "deny", "dns", "expectedVersion", "author", "reason"]);
  for (const k of Object.keys(b)) if (!known.has(k)) problems.push(`policy "${name}": unknown key "${k}"`);
  if (b["name"] !== undefined && b["name"] !== name) problems.push(`policy "${name}": the body names a different policy ("${String(b["name"])}")`);
  if (problems.length > 0) throw new PolicyFileError(problems);
  return { name, priority: priority as number, selector, rules };
}
