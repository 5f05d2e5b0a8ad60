import { invalidArgument } from "../errors.js";
import type { RuleScope } from "./rule-scope.js";

/**
 * Domain names as the policy and the DNS server compare them: lower case, no trailing dot,
 * 1..253 characters, labels of 1..63 characters made of letters, digits, '-' and '_'
 * (underscore is common in service names such as `_sip._tcp.example.com`).
 */

export const MAX_DOMAIN_LENGTH = 253;
export const MAX_LABEL_LENGTH = 63;

const LABEL = /^[a-z0-9_-]{1,63}$/;

/** A domain rule: the name (normalised) and whether it also covers every name below it. */
export interface DomainRule {
  /** Lower case, no trailing dot, validated (1..253 chars, labels 1..63). */
  readonly domain: string;
  readonly includeSubdomains: boolean;
  /** Protocols, destination ports, users and groups the addresses it allows (or denies) are limited to;
   * absent = unscoped (issue 15; see rule-scope.ts). */
  readonly scope?: RuleScope;
}

/** Normalises and validates a domain name; throws NetfenceError INVALID_ARGUMENT when it is not one. */
export function normalizeDomain(text: string): string {
  if (typeof text !== "string") throw invalidArgument("domain must be a string");
  let name = text.trim().toLowerCase();
  if (name.endsWith(".")) name = name.slice(0, -1);
  if (name.length === 0) throw invalidArgument("domain is empty", { domain: text });
  if (name.length > MAX_DOMAIN_LENGTH) {
    throw invalidArgument(`domain is longer than ${MAX_DOMAIN_LENGTH} characters`, { length: name.length });
  }
  for (const label of name.split(".")) {
    if (label.length === 0) throw invalidArgument("domain has an empty label", { domain: name });
    if (label.length > MAX_LABEL_LENGTH) {
      throw invalidArgument(`domain label is longer than ${MAX_LABEL_LENGTH} characters`, { domain: name, label });
    }
    if (!LABEL.test(label)) {
      throw invalidArgument("domain label has characters other than letters, digits, '-' and '_'", { domain: name, label });
    }
  }
  return name;
}

/**
 * The cheap, non-throwing form used on the query path: names from DNS packets are only
 * lower-cased and stripped of a trailing dot (dns-packet already split them into labels;
 * a name that is not valid simply matches no rule).
 */
export function canonicalQueryName(name: string): string {
  // Fast path: most names on the query path are already canonical; scanning is cheaper than
  // allocating a lower-cased copy.
  const last = name.length - 1;
  let canonical = last < 0 || name.charCodeAt(last) !== 0x2e;
  for (let i = 0; canonical && i <= last; i++) {
    const c = name.charCodeAt(i);
    if ((c >= 0x41 && c <= 0x5a) || c > 0x7f) canonical = false;
  }
  if (canonical) return name;
  let lower = name.toLowerCase();
  if (lower.endsWith(".")) lower = lower.slice(0, -1);
  return lower;
}

/**
 * A domain as written in rules: "example.com" (exact) or "*.example.com" (the name and every
 * name below it); with `leadingDot`, ".example.com" means the same as "*.example.com" (the
 * daemon's config accepts both). Throws INVALID_ARGUMENT like `normalizeDomain`.
 */
export function parseDomainPattern(text: string, opts: { leadingDot?: boolean } = {}): { domain: string; wildcard: boolean } {
  const trimmed = text.trim();
  if (trimmed.startsWith("*.")) return { domain: normalizeDomain(trimmed.slice(2)), wildcard: true };
  if (opts.leadingDot === true && trimmed.startsWith(".")) return { domain: normalizeDomain(trimmed.slice(1)), wildcard: true };
  return { domain: normalizeDomain(trimmed), wildcard: false };
}
