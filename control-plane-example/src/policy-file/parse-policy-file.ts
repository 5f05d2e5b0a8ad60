import { isIP } from "node:net";
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node, type Pair, type YAMLMap } from "yaml";
import { MAX_TTL_SECONDS, normalizeDomain, parseCidr, parseDomainPattern, parseDurationSeconds, parseHostPort } from "@netfence/proto/parse";
import type { CidrSpec, DnsMode, DnsSpec, DomainSpec, EstablishedSpec, Mode, PolicySpec } from "@netfence/control-plane-sdk";
import { SCOPE_KEYS, scopeOfEntry } from "./scope-node.js";
import { BUILTIN_DEFAULT_POLICY, type PolicyFile, type PolicyRule } from "./policy-file.js";

/** Every problem of a rejected policy file, each as "file:line:col: message". */
export class PolicyFileError extends Error {
  override readonly name = "PolicyFileError";
  constructor(readonly problems: readonly string[]) {
    super(problems.join("\n"));
  }
}

const MODES: readonly Mode[] = ["disabled", "allowlist", "denylist", "block-all"];
const DNS_MODES: readonly DnsMode[] = ["disabled", "allowlist", "denylist", "proxy"];
const POLICY_KEYS = ["mode", "allow", "deny", "dns", "audit", "established"];
const NO_ANSWERS: ReadonlyMap<string, readonly string[]> = new Map();
const RULE_KEYS = ["name", "match", ...POLICY_KEYS];
const LABEL_KEY = /^[A-Za-z0-9_.\/-]{1,253}$/;

/**
 * Parses and validates a policy file (YAML), reporting every problem at once with its position.
 * Values are validated exactly as the daemon validates commands (same CIDR, domain and upstream
 * parsers), so a file that loads never produces commands a daemon rejects.
 */
export function parsePolicyFile(text: string, fileName: string): PolicyFile {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const problems: string[] = [];
  const at = (offset: number, message: string): void => {
    const { line, col } = lineCounter.linePos(offset);
    problems.push(`${fileName}:${line}:${col}: ${message}`);
  };
  for (const err of doc.errors) at(err.pos[0], firstLine(err.message));
  if (problems.length > 0) throw new PolicyFileError(problems);

  const v = new Validator(at);
  const root = doc.contents;
  if (root === null || (isScalar(root) && (root.value === null || root.value === ""))) {
    throw new PolicyFileError([`${fileName}:1:1: the policy file is empty; it needs at least "rules:" or "defaults:"`]);
  }
  if (!isMap(root)) {
    v.error(root, "the policy file must be a mapping with \"defaults\" and \"rules\"");
    throw new PolicyFileError(problems);
  }
  v.onlyKeys(root, ["defaults", "rules"]);
  const defaultsNode = v.get(root, "defaults");
  const defaults = defaultsNode === undefined ? BUILTIN_DEFAULT_POLICY : v.policy(defaultsNode, "defaults", POLICY_KEYS);
  const defaultAnswers = defaultsNode === undefined ? NO_ANSWERS : v.answersOf(defaultsNode, "defaults");
  const rules: PolicyRule[] = [];
  const rulesNode = v.get(root, "rules");
  if (rulesNode !== undefined) {
    if (!isSeq(rulesNode)) v.error(rulesNode, "\"rules\" must be a list");
    else {
      const names = new Set<string>();
      rulesNode.items.forEach((item, i) => {
        const name = v.ruleName(item as Node, i);
        if (names.has(name)) v.error(item as Node, `duplicate rule name "${name}"`);
        names.add(name);
        const rule = v.rule(item as Node, i);
        if (rule !== null) rules.push(rule);
      });
    }
  }
  if (problems.length > 0 || defaults === null || defaultAnswers === null) throw new PolicyFileError(problems);
  return { defaults, defaultAnswers, rules };
}

class Validator {
  constructor(private readonly at: (offset: number, message: string) => void) {}

  error(node: Node | Pair | null | undefined, message: string, fallback?: Node): void {
    const range = (node && "range" in node ? node.range : undefined) ?? fallback?.range;
    this.at(range?.[0] ?? 0, message);
  }

  get(map: YAMLMap, key: string): Node | undefined {
    const pair = map.items.find((p) => isScalar(p.key) && p.key.value === key);
    if (!pair) return undefined;
    // `key:` with nothing after it is a present-but-null value: report it where the key is.
    return (pair.value as Node | null) ?? (pair.key as Node);
  }

  onlyKeys(map: YAMLMap, allowed: readonly string[]): void {
    for (const pair of map.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : null;
      if (key === null || !allowed.includes(key)) {
        this.error(pair.key as Node, `unknown key ${key === null ? "(not a string)" : `"${key}"`}; expected one of ${allowed.join(", ")}`);
      }
    }
  }

  string(node: Node, what: string): string | null {
    if (!isScalar(node) || (typeof node.value !== "string" && typeof node.value !== "number") || node.value === "") {
      this.error(node, `${what} must be a non-empty string`);
      return null;
    }
    return String(node.value);
  }

  ruleName(node: Node, index: number): string {
    const nameNode = isMap(node) ? this.get(node, "name") : undefined;
    const value = nameNode !== undefined && isScalar(nameNode) ? nameNode.value : null;
    return typeof value === "string" && value !== "" ? value : `rules[${index}]`;
  }

  rule(node: Node, index: number): PolicyRule | null {
    if (!isMap(node)) {
      this.error(node, `rules[${index}] must be a mapping with "match" and a policy`);
      return null;
    }
    this.onlyKeys(node, RULE_KEYS);
    const nameNode = this.get(node, "name");
    if (nameNode !== undefined) this.string(nameNode, "name");
    const name = this.ruleName(node, index);
    const match = this.match(this.get(node, "match"), name);
    const policy = this.policy(node, `rule "${name}"`, RULE_KEYS);
    const answers = this.answersOf(node, `rule "${name}"`);
    if (match === null || policy === null || answers === null) return null;
    return { name, match, policy, answers };
  }

  match(node: Node | undefined, ruleName: string): Record<string, string[]> | null {
    if (node === undefined) return {};
    if (!isMap(node)) {
      this.error(node, `rule "${ruleName}": "match" must be a mapping of label: value (or a list of values)`);
      return null;
    }
    const out: Record<string, string[]> = {};
    let ok = true;
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : "";
      if (!LABEL_KEY.test(key)) {
        this.error(pair.key as Node, `rule "${ruleName}": label "${key}" is not a valid metadata key`);
        ok = false;
        continue;
      }
      const value = pair.value as Node | null;
      if (value === null) {
        this.error(pair.key as Node, `rule "${ruleName}": label "${key}" has no value`);
        ok = false;
      } else if (isSeq(value)) {
        const values = value.items.map((it) => this.string(it as Node, `rule "${ruleName}": match.${key} values`));
        if (values.some((x) => x === null) || values.length === 0) {
          if (values.length === 0) this.error(value, `rule "${ruleName}": match.${key} lists no values`);
          ok = false;
        } else out[key] = values as string[];
      } else {
        const s = this.string(value, `rule "${ruleName}": match.${key}`);
        if (s === null) ok = false;
        else out[key] = [s];
      }
    }
    return ok ? out : null;
  }

  policy(node: Node, where: string, allowedKeys: readonly string[]): PolicySpec | null {
    if (!isMap(node)) {
      this.error(node, `${where} must be a mapping with "mode" and optional "allow", "deny", "dns"`);
      return null;
    }
    if (allowedKeys === POLICY_KEYS) this.onlyKeys(node, POLICY_KEYS);
    const modeNode = this.get(node, "mode");
    let mode: Mode | null = null;
    if (modeNode === undefined) this.error(node, `${where}: "mode" is required (${MODES.join(", ")})`);
    else mode = this.oneOf(modeNode, MODES, `${where}: mode`);
    const allow = this.cidrs(this.get(node, "allow"), `${where}: allow`);
    const deny = this.cidrs(this.get(node, "deny"), `${where}: deny`);
    const dnsNode = this.get(node, "dns");
    // DNS is always fully specified in what we push, so a BulkUpdate replaces it atomically too.
    const dns = dnsNode === undefined ? { mode: "disabled" as const } : this.dns(dnsNode, `${where}: dns`);
    // audit: true = the daemon reports what the policy would block and lets it through (roll-outs).
    const auditNode = this.get(node, "audit");
    let audit: boolean | null = false;
    if (auditNode !== undefined) {
      if (!isScalar(auditNode) || typeof auditNode.value !== "boolean") {
        this.error(auditNode, `${where}: audit must be true or false`);
        audit = null;
      } else audit = auditNode.value;
    }
    // established: keep = connections set up while allowed survive a change that would block them (issue 15).
    const estNode = this.get(node, "established");
    const established: EstablishedSpec | null | undefined = estNode === undefined ? undefined : this.oneOf(estNode, ["keep", "sever"] as const, `${where}: established`);
    if (mode === null || allow === null || deny === null || dns === null || audit === null || established === null) return null;
    return { mode, allow, deny, dns, ...(audit ? { audit } : {}), ...(established === "keep" ? { established } : {}) };
  }

  oneOf<T extends string>(node: Node, values: readonly T[], what: string): T | null {
    const s = isScalar(node) ? String(node.value) : null;
    if (s === null || !(values as readonly string[]).includes(s)) {
      this.error(node, `${what} must be one of ${values.join(", ")}${s === null ? "" : ` (got "${s}")`}`);
      return null;
    }
    return s as T;
  }

  cidrs(node: Node | undefined, what: string): CidrSpec[] | null {
    if (node === undefined) return [];
    if (!isSeq(node)) {
      this.error(node, `${what} must be a list of CIDRs`);
      return null;
    }
    const out: CidrSpec[] = [];
    let ok = true;
    node.items.forEach((item, i) => {
      const spec = this.cidr(item as Node, `${what}[${i}]`);
      if (spec === null) ok = false;
      else out.push(spec);
    });
    return ok ? out : null;
  }

  cidr(node: Node, what: string): CidrSpec | null {
    let cidrNode: Node = node;
    let ttlSeconds: number | undefined;
    let scope: CidrSpec["scope"];
    if (isMap(node)) {
      this.onlyKeys(node, ["cidr", "ttl", ...SCOPE_KEYS]);
      const sc = scopeOfEntry(this, node, what);
      if (sc === null) return null;
      scope = sc;
      const c = this.get(node, "cidr");
      if (c === undefined) {
        this.error(node, `${what}: "cidr" is required`);
        return null;
      }
      cidrNode = c;
      const ttlNode = this.get(node, "ttl");
      if (ttlNode !== undefined) {
        const raw = isScalar(ttlNode) && (typeof ttlNode.value === "string" || typeof ttlNode.value === "number") ? ttlNode.value : null;
        const secs = raw === null ? null : parseDurationSeconds(raw);
        if (secs === null || secs <= 0 || secs > MAX_TTL_SECONDS) {
          this.error(ttlNode, `${what}: ttl must be a positive duration such as 30s, 10m, 2h, 1d (at most 10 years)`);
          return null;
        }
        ttlSeconds = secs;
      }
    }
    const text = this.string(cidrNode, `${what}`);
    if (text === null) return null;
    try {
      parseCidr(text);
    } catch (err) {
      this.error(cidrNode, `${what}: ${(err as Error).message}`);
      return null;
    }
    return { cidr: text, ...(ttlSeconds === undefined ? {} : { ttlSeconds }), ...(scope === undefined ? {} : { scope }) };
  }

  dns(node: Node, what: string): DnsSpec | null {
    if (!isMap(node)) {
      this.error(node, `${what} must be a mapping with "mode" and optional "allow", "deny", "upstreams"`);
      return null;
    }
    this.onlyKeys(node, ["mode", "allow", "deny", "upstreams", "answers"]);
    const modeNode = this.get(node, "mode");
    let mode: DnsMode | null = null;
    if (modeNode === undefined) this.error(node, `${what}: "mode" is required (${DNS_MODES.join(", ")})`);
    else mode = this.oneOf(modeNode, DNS_MODES, `${what}: mode`);
    const allow = this.domains(this.get(node, "allow"), `${what}: allow`);
    const denyNode = this.get(node, "deny");
    let deny = this.domains(denyNode, `${what}: deny`);
    if (deny !== null && deny.some((d) => d.scope !== undefined)) {
      this.error(denyNode!, `${what}: deny: a denied domain cannot be scoped (denying a name refuses its resolution); deny its addresses with a scoped deny CIDR`);
      deny = null;
    }
    const upstreams = this.upstreams(this.get(node, "upstreams"), `${what}: upstreams`);
    if (mode === null || allow === null || deny === null || upstreams === null) return null;
    return { mode, allow, deny, upstreams };
  }

  domains(node: Node | undefined, what: string): DomainSpec[] | null {
    if (node === undefined) return [];
    if (!isSeq(node)) {
      this.error(node, `${what} must be a list of domains`);
      return null;
    }
    const out: DomainSpec[] = [];
    let ok = true;
    node.items.forEach((item, i) => {
      const spec = this.domain(item as Node, `${what}[${i}]`);
      if (spec === null) ok = false;
      else out.push(spec);
    });
    return ok ? out : null;
  }

  domain(node: Node, what: string): DomainSpec | null {
    let domainNode: Node = node;
    let includeSubdomains = false;
    let scope: DomainSpec["scope"];
    if (isMap(node)) {
      this.onlyKeys(node, ["domain", "include_subdomains", ...SCOPE_KEYS]);
      const sc = scopeOfEntry(this, node, what);
      if (sc === null) return null;
      scope = sc;
      const d = this.get(node, "domain");
      if (d === undefined) {
        this.error(node, `${what}: "domain" is required`);
        return null;
      }
      domainNode = d;
      const inc = this.get(node, "include_subdomains");
      if (inc !== undefined) {
        if (!isScalar(inc) || typeof inc.value !== "boolean") {
          this.error(inc, `${what}: include_subdomains must be true or false`);
          return null;
        }
        includeSubdomains = inc.value;
      }
    }
    const text = this.string(domainNode, what);
    if (text === null) return null;
    try {
      const { domain, wildcard } = parseDomainPattern(text);
      return { domain, includeSubdomains: includeSubdomains || wildcard, ...(scope === undefined ? {} : { scope }) };
    } catch (err) {
      this.error(domainNode, `${what}: ${(err as Error).message} ("${text}")`);
      return null;
    }
  }

  /** `dns.answers` of a policy mapping: name → addresses, only meaningful (and allowed) in proxy mode. */
  answersOf(policyNode: Node, where: string): ReadonlyMap<string, readonly string[]> | null {
    if (!isMap(policyNode)) return NO_ANSWERS;
    const dnsNode = this.get(policyNode, "dns");
    if (dnsNode === undefined || !isMap(dnsNode)) return NO_ANSWERS;
    const node = this.get(dnsNode, "answers");
    if (node === undefined) return NO_ANSWERS;
    const modeNode = this.get(dnsNode, "mode");
    if (!modeNode || !isScalar(modeNode) || modeNode.value !== "proxy") {
      this.error(node, `${where}: dns: answers are only used with mode: proxy (netfence-cp answers QueryDns)`);
      return null;
    }
    if (!isMap(node)) {
      this.error(node, `${where}: dns: answers must map a domain to a list of IP addresses`);
      return null;
    }
    const out = new Map<string, string[]>();
    let ok = true;
    for (const pair of node.items) {
      const keyNode = pair.key as Node;
      const keyText = isScalar(keyNode) ? String(keyNode.value) : "";
      let domain: string;
      try {
        domain = normalizeDomain(keyText);
      } catch (err) {
        this.error(keyNode, `${where}: dns: answers: ${(err as Error).message} ("${keyText}")`);
        ok = false;
        continue;
      }
      const value = pair.value as Node | null;
      if (value === null || !isSeq(value) || value.items.length === 0) {
        this.error(value ?? keyNode, `${where}: dns: answers.${domain} must be a non-empty list of IP addresses`);
        ok = false;
        continue;
      }
      const ips: string[] = [];
      for (const item of value.items) {
        const text = isScalar(item) ? String((item as { value: unknown }).value) : "";
        if (isIP(text) === 0) {
          this.error(item as Node, `${where}: dns: answers.${domain}: "${text}" is not an IP address`);
          ok = false;
        } else ips.push(text);
      }
      out.set(domain, ips);
    }
    return ok ? out : null;
  }

  upstreams(node: Node | undefined, what: string): string[] | null {
    if (node === undefined) return [];
    if (!isSeq(node)) {
      this.error(node, `${what} must be a list of "ip:port"`);
      return null;
    }
    const out: string[] = [];
    let ok = true;
    node.items.forEach((item, i) => {
      const text = this.string(item as Node, `${what}[${i}]`);
      if (text === null) {
        ok = false;
        return;
      }
      try {
        out.push(parseHostPort(text, { defaultPort: 53 }).key);
      } catch (err) {
        this.error(item as Node, `${what}[${i}]: ${(err as Error).message}`);
        ok = false;
      }
    });
    return ok ? out : null;
  }
}

function firstLine(message: string): string {
  return message.split("\n")[0]!.trim();
}
