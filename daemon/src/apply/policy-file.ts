import type { Node } from "yaml";
import { invalidArgument } from "@netfence/proto/errors";
import { isAttachmentId, parseCidr, parseDomainPattern, parseHostPort } from "@netfence/proto/parse";
import { DNS_MODE_NAMES, POLICY_MODE_NAMES, type DnsModeName } from "@netfence/proto/modes";
import type { AttachmentPolicy, CidrRule, DomainRule, EstablishedMode } from "../policy/policy.js";
import type { TargetRequest } from "../attachments/target.js";
import { bool, mapping, oneOf, parseYaml, sequence, text, type YamlProblems } from "./yaml-walk.js";
import { parseRuleScope, PrincipalCache } from "./rule-scope-yaml.js";

/**
 * The standalone policy file (`netfenced apply -f policy.yaml`, issue 15; docs/operator-guide.md
 * "Standalone policy file"): the whole desired state of a host without a control plane.
 *
 *   version: 1
 *   attachments:
 *     - name: web                      # the attachment id (stable: the same name is the same attachment)
 *       cgroup: /sys/fs/cgroup/web     # or  interface: veth0  (+ direction: ingress|egress)
 *       mode: allowlist                # allowlist | denylist | block-all | disabled
 *       audit: false
 *       established: sever             # sever | keep
 *       allow:
 *         - cidr: 127.0.0.1/32
 *           protocols: [tcp]
 *           ports: [6379, "8000-8100"]
 *           users: [web]               # cgroup attachments only; names resolved on this host
 *         - domain: "*.pypi.org"
 *       deny:
 *         - cidr: 10.0.0.0/8
 *       dns: { mode: allowlist, upstreams: ["192.0.2.53:53"] }
 *
 * The whole file is validated before anything changes; every problem is reported as
 * `file:line:col: message`. The result is typed (no YAML left) plus the positions of the rules,
 * so later checks (the management-access refusal) can name the rule.
 */

export const POLICY_FILE_VERSION = 1;
/** A file names at most this many attachments and rules per list (a typo must not make a huge policy). */
export const MAX_ATTACHMENTS = 1024;
export const MAX_RULES_PER_LIST = 100_000;

export interface DesiredAttachment {
  readonly name: string;
  readonly target: TargetRequest;
  readonly policy: AttachmentPolicy;
  /** Where the attachment's entry and its target start ("file:line:col"). */
  readonly where: string;
  /** Where its target is given ("file:line:col"): a target missing on this host is reported there. */
  readonly targetWhere: string;
  /** Deny CIDR rules with their positions (the management-access check names them). */
  readonly denyAt: readonly { readonly rule: CidrRule; readonly where: string }[];
}

export interface PolicyFile {
  readonly attachments: readonly DesiredAttachment[];
}

const TOP_KEYS = ["version", "attachments"];
const ATTACHMENT_KEYS = ["name", "cgroup", "interface", "direction", "mode", "audit", "established", "allow", "deny", "dns"];
const RULE_KEYS = ["cidr", "domain", "protocols", "ports", "users", "groups"];
const DNS_KEYS = ["mode", "upstreams"];

/**
 * Parses and validates a policy file. Throws one INVALID_ARGUMENT listing every problem
 * (`file:line:col: message`, one per line) or returns the typed desired state.
 */
export async function parsePolicyFile(fileName: string, content: string): Promise<PolicyFile> {
  const { root, problems: p } = parseYaml(fileName, content);
  const out: DesiredAttachment[] = [];
  if (root !== null) {
    const top = mapping(root, "the policy file", TOP_KEYS, p);
    if (top !== null) {
      const version = top.get("version");
      if (version === undefined) p.at(root, `"version: ${POLICY_FILE_VERSION}" is required`);
      else if (text(version, "version", p) !== String(POLICY_FILE_VERSION)) p.at(version, `unsupported version (this netfenced reads version ${POLICY_FILE_VERSION})`);
      const items = sequence(top.get("attachments"), "attachments", p);
      if (items.length > MAX_ATTACHMENTS) p.at(top.get("attachments"), `at most ${MAX_ATTACHMENTS} attachments`);
      const principals = new PrincipalCache();
      const names = new Map<string, string>();
      const targets = new Map<string, string>();
      for (const item of items.slice(0, MAX_ATTACHMENTS)) {
        const a = await parseAttachment(item, principals, p);
        if (a === null) continue;
        const dup = names.get(a.name);
        if (dup !== undefined) p.at(item, `attachment name "${a.name}" is used twice (first at ${dup})`);
        names.set(a.name, a.where);
        const key = a.target.kind === "cgroup" ? `cgroup ${a.target.path.replace(/\/+$/, "")}` : `interface ${a.target.name} ${a.target.direction}`;
        const dupTarget = targets.get(key);
        if (dupTarget !== undefined) p.list.push(`${a.targetWhere}: ${key} is the target of two attachments (first at ${dupTarget})`);
        targets.set(key, a.where);
        out.push(a);
      }
    }
  }
  if (p.list.length > 0) throw invalidArgument(`${fileName}: ${p.list.length} problem(s), nothing applied:\n${p.list.join("\n")}`);
  return { attachments: out };
}

async function parseAttachment(node: Node, principals: PrincipalCache, p: YamlProblems): Promise<DesiredAttachment | null> {
  const f = mapping(node, "an attachment", ATTACHMENT_KEYS, p);
  if (f === null) return null;
  const errorsBefore = p.list.length;
  const nameNode = f.get("name");
  const name = nameNode === undefined ? null : text(nameNode, "name", p);
  if (nameNode === undefined) p.at(node, "an attachment needs a name (its attachment id)");
  else if (name !== null && !isAttachmentId(name)) p.at(nameNode, `name "${name.slice(0, 70)}" must be 1..63 letters, digits, '_' or '-', starting with a letter or digit`);
  const label = `attachment "${name ?? "?"}"`;
  let target: TargetRequest | null = null;
  const cg = f.get("cgroup");
  const ifc = f.get("interface");
  const targetNode = cg ?? ifc ?? null;
  if ((cg === undefined) === (ifc === undefined)) p.at(node, `${label} needs exactly one target: cgroup: PATH or interface: NAME`);
  else if (cg !== undefined) {
    const path = text(cg, "cgroup", p);
    if (f.has("direction")) p.at(f.get("direction"), "direction applies to interface attachments only");
    if (path !== null) target = { kind: "cgroup", path: path.trim() };
  } else {
    const ifname = text(ifc, "interface", p);
    const direction = oneOf(f.get("direction"), "direction", ["ingress", "egress"] as const, "ingress", p);
    if (ifname !== null) target = { kind: "interface", name: ifname.trim(), direction };
  }
  const mode = oneOf(f.get("mode"), "mode", POLICY_MODE_NAMES, "allowlist", p);
  const audit = bool(f.get("audit"), "audit", false, p);
  const established: EstablishedMode = oneOf(f.get("established"), "established", ["sever", "keep"] as const, "sever", p);
  const owner = target?.kind === "cgroup";
  const allow = await parseRules(f.get("allow"), `${label} allow`, owner, principals, p);
  const deny = await parseRules(f.get("deny"), `${label} deny`, owner, principals, p);
  let dnsMode: DnsModeName = allow.domains.length > 0 ? "allowlist" : deny.domains.length > 0 ? "denylist" : "disabled";
  const upstreams: string[] = [];
  const dnsNode = f.get("dns");
  if (dnsNode !== undefined && dnsNode !== null) {
    const d = mapping(dnsNode, `${label} dns`, DNS_KEYS, p);
    if (d !== null) {
      dnsMode = oneOf(d.get("mode"), "dns mode", DNS_MODE_NAMES, dnsMode, p);
      for (const u of sequence(d.get("upstreams"), "dns upstreams", p)) {
        const s = text(u, "dns upstream", p);
        if (s === null) continue;
        try {
          upstreams.push(parseHostPort(s, { defaultPort: 53 }).key);
        } catch (err) {
          p.at(u, `dns upstream: ${(err as Error).message}`);
        }
      }
    }
  }
  if (name === null || target === null || p.list.length > errorsBefore) return null;
  const policy: AttachmentPolicy = {
    mode, audit, established,
    allowCidrs: allow.cidrs.map((c) => c.rule),
    denyCidrs: deny.cidrs.map((c) => c.rule),
    dns: { mode: dnsMode, allowDomains: allow.domains, denyDomains: deny.domains, upstreams },
  };
  return { name, target, policy, where: p.where(node), targetWhere: p.where(targetNode ?? node), denyAt: deny.cidrs };
}

interface ParsedRules {
  cidrs: { rule: CidrRule; where: string }[];
  domains: DomainRule[];
}

async function parseRules(node: Node | null | undefined, what: string, owner: boolean, principals: PrincipalCache, p: YamlProblems): Promise<ParsedRules> {
  const out: ParsedRules = { cidrs: [], domains: [] };
  const items = sequence(node, what, p);
  if (items.length > MAX_RULES_PER_LIST) {
    p.at(node, `${what}: at most ${MAX_RULES_PER_LIST} rules`);
    return out;
  }
  for (const item of items) {
    const f = mapping(item, `a rule of ${what}`, RULE_KEYS, p);
    if (f === null) continue;
    const cidrNode = f.get("cidr");
    const domainNode = f.get("domain");
    if ((cidrNode === undefined) === (domainNode === undefined)) {
      p.at(item, `a rule of ${what} needs exactly one of cidr: or domain:`);
      continue;
    }
    const scope = await parseRuleScope(f, `${what} rule`, owner, principals, p);
    if (cidrNode !== undefined) {
      const s = text(cidrNode, "cidr", p);
      if (s === null) continue;
      try {
        const rule: CidrRule = scope === undefined ? { cidr: parseCidr(s.trim()), expiresAtMs: null } : { cidr: parseCidr(s.trim()), expiresAtMs: null, scope };
        out.cidrs.push({ rule, where: p.where(item) });
      } catch (err) {
        p.at(cidrNode, `cidr: ${(err as Error).message}`);
      }
    } else {
      const s = text(domainNode, "domain", p);
      if (s === null) continue;
      try {
        const d = parseDomainPattern(s);
        out.domains.push(scope === undefined ? { domain: d.domain, includeSubdomains: d.wildcard } : { domain: d.domain, includeSubdomains: d.wildcard, scope });
      } catch (err) {
        p.at(domainNode, `domain: ${(err as Error).message}`);
      }
    }
  }
  return out;
}
