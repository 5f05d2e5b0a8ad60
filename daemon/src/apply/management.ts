import { cidrContains, formatCidr, parseCidr, type Cidr } from "@netfence/proto/parse";
import type { ProtectedEntry } from "../datapath/filter.js";
import type { CidrRule } from "../policy/policy.js";
import { scopeText } from "./rule-scope-yaml.js";

/**
 * Lockout safety (issue 15, seed 004 FR-4; docs/operator-guide.md "Management access"): config
 * `management: {networks: [CIDR…], ports: [22]}`. For every management network and port the
 * daemon installs host-wide protected entries that no policy can revoke (they are checked before
 * the policy and before block-all):
 *   - tcp/<port> TO the network (the workload or the host connects to a management host), and
 *   - "from" entries: TCP from a stream socket bound to <port> to the network (replies of the host's
 *     sshd when a cgroup attachment covers it; cgroup programs only, see ProtectedEntry.from).
 * An apply whose deny rules would cut that access is refused (lockoutProblems); block-all is
 * accepted, the protected entries carry SSH through it. networks [] = off.
 */

export interface ManagementConfig {
  readonly networks: readonly Cidr[];
  readonly ports: readonly number[];
}

export const DEFAULT_MANAGEMENT_PORTS: readonly number[] = [22];
export const MANAGEMENT_OFF: ManagementConfig = { networks: [], ports: DEFAULT_MANAGEMENT_PORTS };

/** The protected entries of the management networks (empty when off). */
export function managementProtected(m: ManagementConfig): ProtectedEntry[] {
  const out: ProtectedEntry[] = [];
  for (const cidr of m.networks) {
    for (const port of m.ports) {
      out.push({ cidr, protocol: 6, port, action: "allow" });
      out.push({ cidr, protocol: 6, port, action: "allow", from: true });
    }
  }
  return out;
}

const overlaps = (a: Cidr, b: Cidr): boolean => a.family === b.family && (cidrContains(a, b) || cidrContains(b, a));

/** True when a rule with this scope matches TCP to one of `ports` (an unscoped rule matches everything). */
function coversPorts(rule: CidrRule, ports: readonly number[]): boolean {
  const s = rule.scope;
  if (s === undefined) return true;
  if (s.protocols.length > 0 && !s.protocols.includes(6)) return false;
  if (s.ports.length === 0) return true;
  return ports.some((port) => s.ports.some((r) => r.from <= port && port <= r.to));
}

/**
 * Deny rules that would cut management access: a deny CIDR (scoped or not) overlapping a
 * management network whose scope includes TCP to a management port. One message per rule, with
 * `where` (its file position) in front.
 */
export function lockoutProblems(m: ManagementConfig, attachment: string, denies: readonly { rule: CidrRule; where: string }[]): string[] {
  const out: string[] = [];
  for (const { rule, where } of denies) {
    const nets = m.networks.filter((n) => overlaps(n, rule.cidr));
    if (nets.length === 0 || !coversPorts(rule, m.ports)) continue;
    out.push(
      `${where}: attachment "${attachment}": deny ${formatCidr(rule.cidr)}${scopeText(rule.scope)} would cut management access ` +
        `(tcp/${m.ports.join(",")} to ${nets.map(formatCidr).join(", ")}, config management.networks); narrow the rule or exclude the management ports`,
    );
  }
  return out;
}

/** Config: management networks that overlap `protected_deny` (which drops them before anything). */
export function protectedDenyOverlaps(m: ManagementConfig, protectedDeny: readonly Cidr[]): string[] {
  const out: string[] = [];
  for (const n of m.networks) {
    for (const d of protectedDeny) {
      if (overlaps(n, d)) out.push(`management.networks: ${formatCidr(n)} overlaps protected_deny ${formatCidr(d)}, which would cut management access`);
    }
  }
  return out;
}

/**
 * The kernel's protected-allow trie holds ONE value (protocol, port) per prefix (bpf/loader/host.c):
 * two `protected`/management entries on the same prefix with different ports would leave only one in
 * force (and a "to" and "from" pair with different ports is refused by the loader). Such a config is
 * refused at start with this message instead of half-protecting. `from` entries pair with the "to"
 * entry of their prefix.
 */
export function protectedPrefixClashes(entries: readonly ProtectedEntry[]): string[] {
  const byPrefix = new Map<string, ProtectedEntry>();
  const out: string[] = [];
  for (const e of entries) {
    if (e.action === "deny") continue;
    const key = `${formatCidr(e.cidr)}${e.from === true ? " from" : ""}`;
    const prior = byPrefix.get(key) ?? byPrefix.get(`${formatCidr(e.cidr)}${e.from === true ? "" : " from"}`);
    if (prior !== undefined && (prior.port !== e.port || (prior.from === e.from && prior.protocol !== e.protocol))) {
      out.push(
        `protected/management: ${formatCidr(e.cidr)} is protected for port ${prior.port} and port ${e.port}; the kernel's protected set ` +
          "holds one port per prefix — protect distinct addresses per port, or use port 0 (any) in `protected`",
      );
      continue;
    }
    byPrefix.set(key, e);
  }
  return out;
}

/** Parses config `management.networks` (list or comma-separated env text) and `management.ports`. */
export function parseManagement(networks: unknown, ports: unknown, problems: string[]): ManagementConfig {
  const list = (key: string, v: unknown): string[] => {
    if (v === undefined || v === null || v === "") return [];
    if (typeof v === "string") return v.split(",").map((s) => s.trim()).filter((s) => s !== "");
    if (Array.isArray(v)) return v.map((x: unknown) => String(x).trim());
    problems.push(`${key}: expected a list`);
    return [];
  };
  const nets: Cidr[] = [];
  for (const s of list("management.networks", networks)) {
    try {
      nets.push(parseCidr(s));
    } catch (err) {
      problems.push(`management.networks: ${(err as Error).message}`);
    }
  }
  const portList = list("management.ports", ports);
  const outPorts: number[] = [];
  for (const s of portList) {
    const n = /^\d{1,5}$/.test(s) ? Number(s) : NaN;
    if (!Number.isInteger(n) || n < 1 || n > 65535) problems.push(`management.ports: "${s.slice(0, 20)}" is not a port 1..65535`);
    else if (!outPorts.includes(n)) outPorts.push(n);
  }
  if (ports !== undefined && ports !== null && ports !== "" && portList.length === 0) problems.push("management.ports: must name at least one port");
  return { networks: nets, ports: portList.length === 0 ? DEFAULT_MANAGEMENT_PORTS : outPorts };
}
