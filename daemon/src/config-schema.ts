import net from "node:net";
import { parseCidr, parseDomainPattern, parseDurationMs, parseHostPort as hostPort } from "@netfence/proto/parse";
import { parseQueryType } from "./dns/query-types.js";
import type { AttachMethodPreference, FilterMode, ProtectedEntry } from "./datapath/filter.js";
import type { CidrRule, DnsModeName, DomainRule } from "./policy/policy.js";

/**
 * The config keys (SPEC §4 plus additions) and one hand-written parser per value kind.
 * Every parser takes the raw YAML value or an environment string and either returns the typed
 * value or pushes a problem naming the key; nothing throws, so all problems are reported at once.
 */

export type Problems = string[];

/** Every leaf key (dotted); each one is also `NETFENCE_<KEY>` with `.` → `_`, upper case. */
export const CONFIG_KEYS = [
  "socket",
  "data_dir",
  "log_level",
  "dns.listen_addr",
  "dns.port_min",
  "dns.port_max",
  "dns.upstream",
  "dns.min_ttl",
  "dns.answer_cache",
  "dns.quotas.qps",
  "dns.quotas.inflight",
  "dns.quotas.learned",
  "dns.quotas.answer_records",
  "dns.quotas.tcp_connections",
  "dns.quotas.tcp_per_source",
  "dns.refuse_types",
  "dns.port_guard",
  "dns.port_guard_cgroup",
  "control_plane.url",
  "control_plane.subscribe_ack_timeout",
  "control_plane.heartbeat_interval",
  "control_plane.tls.ca",
  "control_plane.tls.cert",
  "control_plane.tls.key",
  "control_plane.token",
  "metadata",
  "default_policy.mode",
  "default_policy.audit",
  "default_policy.allow_cidrs",
  "default_policy.deny_cidrs",
  "default_policy.dns.mode",
  "default_policy.dns.allow_domains",
  "default_policy.dns.deny_domains",
  "default_policy.dns.upstreams",
  "protected",
  "protected_deny",
  "management.networks",
  "management.ports",
  "bpf.pin_root",
  "bpf.loader_path",
  "bpf.attach_method",
  "restore",
  "cgroup_root",
  "metrics.listen",
  "history.max_entries",
  "history.max_age",
] as const;

export type ConfigKey = (typeof CONFIG_KEYS)[number];

export function envName(key: string): string {
  return `NETFENCE_${key.replace(/\./g, "_").toUpperCase()}`;
}

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

function describe(v: unknown): string {
  return typeof v === "string" ? `"${v}"` : JSON.stringify(v) ?? String(v);
}

export function parseString(key: string, v: unknown, p: Problems): string | null {
  if (v === undefined || v === null || v === "") return null;
  if (typeof v !== "string") {
    p.push(`${key}: expected a string, got ${describe(v)}`);
    return null;
  }
  return v;
}

export function parseLogLevel(key: string, v: unknown, p: Problems): LogLevel {
  const s = parseString(key, v, p) ?? "info";
  if ((LOG_LEVELS as readonly string[]).includes(s)) return s as LogLevel;
  p.push(`${key}: "${s}" is not one of ${LOG_LEVELS.join(", ")}`);
  return "info";
}

/** "5s", "250ms", "1m", "1h", "1m30s"; a bare number is seconds (the contract's duration parser). Returns milliseconds. */
export function parseDuration(key: string, v: unknown, fallbackMs: number, p: Problems): number {
  if (v === undefined || v === null || v === "") return fallbackMs;
  const ms = typeof v === "number" || typeof v === "string" ? parseDurationMs(v) : null;
  if (ms !== null) return Math.round(ms);
  p.push(`${key}: ${describe(v)} is not a duration (e.g. "5s", "250ms", "1m")`);
  return fallbackMs;
}

export function parseInteger(key: string, v: unknown, fallback: number, min: number, max: number, p: Problems): number {
  if (v === undefined || v === null || v === "") return fallback;
  const n = typeof v === "number" ? v : typeof v === "string" && /^\s*-?\d+\s*$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) {
    p.push(`${key}: ${describe(v)} is not an integer in ${min}..${max}`);
    return fallback;
  }
  return n;
}

export function parseBoolean(key: string, v: unknown, fallback: boolean, p: Problems): boolean {
  if (v === undefined || v === null || v === "") return fallback;
  if (typeof v === "boolean") return v;
  if (v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  p.push(`${key}: ${describe(v)} is not a boolean`);
  return fallback;
}

export function parseIpAddress(key: string, v: unknown, fallback: string, p: Problems): string {
  const s = parseString(key, v, p);
  if (s === null) return fallback;
  if (net.isIP(s) === 0) {
    p.push(`${key}: "${s}" is not an IP address`);
    return fallback;
  }
  return s;
}

/** "host:port" or "[v6]:port" (the contract's host:port parser); the host may be a name (control plane) unless `ipOnly`. */
export function parseHostPort(key: string, v: unknown, p: Problems, ipOnly: boolean): string | null {
  const s = parseString(key, v, p);
  if (s === null) return null;
  try {
    hostPort(s, { names: !ipOnly });
    return s;
  } catch {
    p.push(`${key}: "${s}" is not a ${ipOnly ? "ip:port" : "host:port"} address`);
    return null;
  }
}

/**
 * One or several "host:port" addresses (a YAML list or a comma-separated string), each checked
 * like parseHostPort; joined with "," (the control-plane client fails over between them in order).
 */
export function parseHostPortList(key: string, v: unknown, p: Problems): string | null {
  const list = parseStringList(key, v, p);
  if (list.length === 0) return null;
  const ok: string[] = [];
  for (const s of list) {
    try {
      hostPort(s, { names: true });
      ok.push(s);
    } catch {
      p.push(`${key}: "${s}" is not a host:port address`);
    }
  }
  return ok.length === list.length ? ok.join(",") : null;
}

/** A list given as a YAML sequence or as a comma-separated string (environment). */
export function parseStringList(key: string, v: unknown, p: Problems): string[] {
  if (v === undefined || v === null || v === "") return [];
  if (typeof v === "string") return v.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v as string[];
  p.push(`${key}: expected a list of strings, got ${describe(v)}`);
  return [];
}

/** A string map given as a YAML mapping or as "k=v,k2=v2" (environment). */
export function parseStringMap(key: string, v: unknown, p: Problems): Record<string, string> {
  if (v === undefined || v === null || v === "") return {};
  const out: Record<string, string> = {};
  if (typeof v === "string") {
    for (const part of v.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
      const eq = part.indexOf("=");
      if (eq <= 0) {
        p.push(`${key}: "${part}" is not key=value`);
        continue;
      }
      out[part.slice(0, eq)] = part.slice(eq + 1);
    }
    return out;
  }
  if (typeof v === "object" && !Array.isArray(v)) {
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
      if (typeof val === "string" || typeof val === "number" || typeof val === "boolean") out[k] = String(val);
      else p.push(`${key}.${k}: expected a string value`);
    }
    return out;
  }
  p.push(`${key}: expected a mapping, got ${describe(v)}`);
  return {};
}

const FILTER_MODES: Record<string, FilterMode> = {
  disabled: "disabled",
  allowlist: "allowlist",
  denylist: "denylist",
  "block-all": "block-all",
  block_all: "block-all",
  blockall: "block-all",
};

export function parseFilterMode(key: string, v: unknown, fallback: FilterMode, p: Problems): FilterMode {
  const s = parseString(key, v, p);
  if (s === null) return fallback;
  const mode = FILTER_MODES[s.toLowerCase()];
  if (mode === undefined) {
    p.push(`${key}: "${s}" is not one of disabled, allowlist, denylist, block-all`);
    return fallback;
  }
  return mode;
}

/** `bpf.attach_method`: how interface filters are attached. */
export function parseAttachMethod(key: string, v: unknown, p: Problems): AttachMethodPreference {
  const s = parseString(key, v, p);
  if (s === null) return "auto";
  const lower = s.toLowerCase();
  if (lower === "auto" || lower === "tcx" || lower === "clsact") return lower;
  p.push(`${key}: "${s}" is not one of auto, tcx, clsact`);
  return "auto";
}

export function parseDnsMode(key: string, v: unknown, fallback: DnsModeName, p: Problems): DnsModeName {
  const s = parseString(key, v, p);
  if (s === null) return fallback;
  const lower = s.toLowerCase();
  if (lower === "disabled" || lower === "allowlist" || lower === "denylist" || lower === "proxy") return lower;
  p.push(`${key}: "${s}" is not one of disabled, allowlist, denylist, proxy`);
  return fallback;
}

export function parseCidrRules(key: string, v: unknown, p: Problems): CidrRule[] {
  const out: CidrRule[] = [];
  for (const text of parseStringList(key, v, p)) {
    try {
      out.push({ cidr: parseCidr(text), expiresAtMs: null });
    } catch (err) {
      p.push(`${key}: ${(err as Error).message}`);
    }
  }
  return out;
}

/** "example.com" (exact) or "*.example.com" / ".example.com" (the name and everything below it). */
export function parseDomainRules(key: string, v: unknown, p: Problems): DomainRule[] {
  const out: DomainRule[] = [];
  for (const text of parseStringList(key, v, p)) {
    try {
      const { domain, wildcard } = parseDomainPattern(text, { leadingDot: true });
      out.push({ domain, includeSubdomains: wildcard });
    } catch (err) {
      p.push(`${key}: "${text}": ${(err as Error).message}`);
    }
  }
  return out;
}

/** `dns.refuse_types`: query type mnemonics ("TXT", "NULL", "ANY", "TYPE65"). */
export function parseQueryTypes(key: string, v: unknown, p: Problems): number[] {
  const out: number[] = [];
  // YAML reads an unquoted NULL (the query type) as null: take it as what the operator meant.
  const list = Array.isArray(v) ? v.map((x: unknown) => (x === null ? "NULL" : x)) : v;
  for (const text of parseStringList(key, list, p)) {
    const t = parseQueryType(text);
    if (t === null) p.push(`${key}: "${text}" is not a DNS query type`);
    else if (!out.includes(t)) out.push(t);
  }
  return out;
}

/** `protected_deny`: CIDRs dropped for every attachment in every mode, never opened by DNS. */
export function parseProtectedDeny(key: string, v: unknown, p: Problems): ProtectedEntry[] {
  return parseCidrRules(key, v, p).map((r) => ({ cidr: r.cidr, protocol: 0, port: 0, action: "deny" as const }));
}

const PROTOCOLS: Record<string, number> = { any: 0, tcp: 6, udp: 17 };

/** `protected`: a list of {cidr, protocol?: tcp|udp|any, port?}. */
export function parseProtected(key: string, v: unknown, p: Problems): ProtectedEntry[] {
  if (v === undefined || v === null || v === "") return [];
  if (typeof v === "string") {
    // Environment form: JSON, e.g. NETFENCE_PROTECTED='[{"cidr":"192.0.2.10/32","protocol":"tcp","port":22}]'
    try {
      v = JSON.parse(v) as unknown;
    } catch {
      p.push(`${key}: expected a JSON list of {cidr, protocol, port}`);
      return [];
    }
  }
  if (!Array.isArray(v)) {
    p.push(`${key}: expected a list of {cidr, protocol, port}`);
    return [];
  }
  const out: ProtectedEntry[] = [];
  v.forEach((item: unknown, i) => {
    const k = `${key}[${i}]`;
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      p.push(`${k}: expected a mapping with cidr, protocol, port`);
      return;
    }
    const rec = item as Record<string, unknown>;
    for (const extra of Object.keys(rec)) {
      if (!["cidr", "protocol", "port"].includes(extra)) p.push(`${k}.${extra}: unknown key`);
    }
    const cidrText = parseString(`${k}.cidr`, rec.cidr, p);
    if (cidrText === null) {
      p.push(`${k}.cidr: required`);
      return;
    }
    const protoText = (parseString(`${k}.protocol`, rec.protocol, p) ?? "any").toLowerCase();
    const protocol = PROTOCOLS[protoText];
    if (protocol === undefined) p.push(`${k}.protocol: "${protoText}" is not one of tcp, udp, any`);
    const port = parseInteger(`${k}.port`, rec.port, 0, 0, 65535, p);
    try {
      out.push({ cidr: parseCidr(cidrText), protocol: protocol ?? 0, port });
    } catch (err) {
      p.push(`${k}.cidr: ${(err as Error).message}`);
    }
  });
  return out;
}
