import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { AttachMethodPreference, ProtectedEntry } from "./datapath/filter.js";
import type { AttachmentPolicy } from "./policy/policy.js";
import { DEFAULT_DNS_QUOTAS, DNS_QUOTA_LIMITS, type DnsQuotas } from "./dns/dns-quotas.js";
import { DEFAULT_ANSWER_CACHE_ENTRIES, MAX_ANSWER_CACHE_ENTRIES } from "./dns/answer-cache.js";
import { managementProtected, parseManagement, protectedDenyOverlaps, protectedPrefixClashes, type ManagementConfig } from "./apply/management.js";
import {
  CONFIG_KEYS,
  envName,
  parseAttachMethod,
  parseBoolean,
  parseCidrRules,
  parseDnsMode,
  parseDomainRules,
  parseDuration,
  parseFilterMode,
  parseHostPort,
  parseHostPortList,
  parseInteger,
  parseIpAddress,
  parseLogLevel,
  parseProtected,
  parseProtectedDeny,
  parseQueryTypes,
  parseString,
  parseStringList,
  parseStringMap,
  type LogLevel,
  type Problems,
} from "./config-schema.js";

/**
 * Daemon configuration: defaults → YAML file → `NETFENCE_*` environment → validate, in one place.
 * Every problem is collected; the error message is one line naming each bad key.
 */

export interface DaemonConfig {
  readonly socket: string;
  /** null → state in memory only. */
  readonly dataDir: string | null;
  readonly logLevel: LogLevel;
  readonly dns: {
    readonly listenAddr: string;
    readonly portMin: number;
    readonly portMax: number;
    /** "ip:port" */
    readonly upstream: string;
    /** Floor of the TTL of every DNS-learned address (max(answer TTL, this)), in seconds. */
    readonly minTtlSeconds: number;
    /** Answers cached per attachment (dns/answer-cache.ts; 0 = no cache). */
    readonly answerCacheEntries: number;
    /** Per-attachment quotas (defaults; `netfence.dns.*` metadata overrides them per attachment). */
    readonly quotas: DnsQuotas;
    /** Query types every DNS server refuses unless an attachment says otherwise. */
    readonly refuseTypes: readonly number[];
    /**
     * Refuse bind() to the DNS port range to every process but the daemon's user (a cgroup
     * sock_addr program on `portGuardCgroup`, default the cgroup2 mount root), so an
     * unprivileged local user cannot squat a tenant's DNS port, even while the daemon restarts.
     */
    readonly portGuard: boolean;
    /** null → the cgroup2 mount root. */
    readonly portGuardCgroup: string | null;
  };
  readonly controlPlane: {
    readonly url: string | null;
    readonly subscribeAckTimeoutMs: number;
    readonly heartbeatIntervalMs: number;
    readonly tls: { readonly ca: string | null; readonly cert: string | null; readonly key: string | null } | null;
    readonly token: string | null;
  };
  readonly metadata: Readonly<Record<string, string>>;
  /** Policy of every attachment when there is no control plane. */
  readonly defaultPolicy: AttachmentPolicy;
  /** Host-wide protected destinations: action "allow" (config `protected`) and "deny" (`protected_deny`). */
  readonly protected: readonly ProtectedEntry[];
  /** Lockout safety (apply/management.ts): management networks and ports no policy can cut; networks [] = off. */
  readonly management: ManagementConfig;
  readonly bpf: {
    readonly pinRoot: string;
    readonly loaderPath: string | null;
    /** Interface filters: "auto" (TCX where the kernel has it, else clsact), or one forced. */
    readonly attachMethod: AttachMethodPreference;
  };
  /**
   * On start, re-create stored attachments whose pins are gone but whose target is there (after
   * a reboot). false (`restore: false`, `netfenced start --no-restore`): drop them instead.
   */
  readonly restore: boolean;
  /** null → the cgroup2 mount found in /proc/mounts. */
  readonly cgroupRoot: string | null;
  readonly metrics: { readonly listen: string | null };
  /** The audit trail of policy changes (history/): kept entries, bounded by count and by age. */
  readonly history: { readonly maxEntries: number; readonly maxAgeMs: number };
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: readonly string[]) {
    super(`invalid config: ${problems.join("; ")}`);
  }
}

export interface LoadConfigOptions {
  /** YAML file path; absent → defaults + environment only. */
  readonly file?: string | null;
  /** YAML text instead of a file (tests). */
  readonly text?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** Loads and validates; throws ConfigError (every problem in one line). */
export function loadConfig(opts: LoadConfigOptions = {}): DaemonConfig {
  const problems: Problems = [];
  let text = opts.text ?? "";
  if (opts.file) {
    try {
      text = readFileSync(opts.file, "utf8");
    } catch (err) {
      throw new ConfigError([`cannot read config file ${opts.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
    }
  }
  let doc: unknown;
  try {
    doc = text.trim() === "" ? {} : parseYaml(text);
  } catch (err) {
    throw new ConfigError([`config file is not valid YAML: ${(err as Error).message.split("\n")[0]}`]);
  }
  if (doc === null || doc === undefined) doc = {};
  if (typeof doc !== "object" || Array.isArray(doc)) throw new ConfigError(["config file must be a YAML mapping"]);

  const flat = new Map<string, unknown>();
  flatten(doc as Record<string, unknown>, "", flat, problems);
  const env = opts.env ?? process.env;
  for (const key of CONFIG_KEYS) {
    const value = env[envName(key)];
    if (value !== undefined) flat.set(key, value);
  }
  const config = build(flat, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Collects leaf values by dotted key, reporting unknown keys. Map-valued leaves stay whole. */
function flatten(obj: Record<string, unknown>, prefix: string, out: Map<string, unknown>, problems: Problems): void {
  const known = CONFIG_KEYS as readonly string[];
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix === "" ? k : `${prefix}.${k}`;
    if (known.includes(key)) {
      out.set(key, v);
    } else if (known.some((leaf) => leaf.startsWith(`${key}.`))) {
      if (v === null || v === undefined) continue;
      if (typeof v !== "object" || Array.isArray(v)) problems.push(`${key}: expected a mapping`);
      else flatten(v as Record<string, unknown>, key, out, problems);
    } else {
      problems.push(`${key}: unknown key`);
    }
  }
}

function build(f: Map<string, unknown>, p: Problems): DaemonConfig {
  const portMin = parseInteger("dns.port_min", f.get("dns.port_min"), 11000, 1, 65535, p);
  const portMax = parseInteger("dns.port_max", f.get("dns.port_max"), 11500, 1, 65535, p);
  if (portMin > portMax) p.push(`dns.port_min: ${portMin} is greater than dns.port_max (${portMax})`);
  const tlsCa = parseString("control_plane.tls.ca", f.get("control_plane.tls.ca"), p);
  const tlsCert = parseString("control_plane.tls.cert", f.get("control_plane.tls.cert"), p);
  const tlsKey = parseString("control_plane.tls.key", f.get("control_plane.tls.key"), p);
  if ((tlsCert === null) !== (tlsKey === null)) p.push("control_plane.tls: cert and key must be given together");
  const anyTls = tlsCa !== null || tlsCert !== null || tlsKey !== null;
  const pinRoot = parseString("bpf.pin_root", f.get("bpf.pin_root"), p) ?? "/sys/fs/bpf/netfence";
  if (!pinRoot.startsWith("/")) p.push(`bpf.pin_root: "${pinRoot}" must be an absolute path`);
  const cgroupRoot = parseString("cgroup_root", f.get("cgroup_root"), p);
  if (cgroupRoot !== null && !cgroupRoot.startsWith("/")) p.push(`cgroup_root: "${cgroupRoot}" must be an absolute path`);
  const socket = parseString("socket", f.get("socket"), p) ?? "/var/run/netfence.sock";
  const minTtl = parseDuration("dns.min_ttl", f.get("dns.min_ttl"), 300_000, p);
  const listenAddr = parseIpAddress("dns.listen_addr", f.get("dns.listen_addr"), "127.0.0.1", p);
  if (listenAddr === "0.0.0.0" || listenAddr === "::" || /^0+(\.0+){3}$/.test(listenAddr) || /^[0:]+$/.test(listenAddr)) {
    p.push(`dns.listen_addr: "${listenAddr}" is a wildcard; give one address of this host (a wildcard would serve every network and defeat tenant isolation)`);
  }
  const quota = (name: keyof DnsQuotas, key: string): number =>
    parseInteger(`dns.quotas.${key}`, f.get(`dns.quotas.${key}`), DEFAULT_DNS_QUOTAS[name], 1, DNS_QUOTA_LIMITS[name], p);
  const portGuardCgroup = parseString("dns.port_guard_cgroup", f.get("dns.port_guard_cgroup"), p);
  if (portGuardCgroup !== null && !portGuardCgroup.startsWith("/")) p.push(`dns.port_guard_cgroup: "${portGuardCgroup}" must be an absolute path`);
  const protectedEntries = [...parseProtected("protected", f.get("protected"), p), ...parseProtectedDeny("protected_deny", f.get("protected_deny"), p)];
  const management = parseManagement(f.get("management.networks"), f.get("management.ports"), p);
  p.push(...protectedDenyOverlaps(management, protectedEntries.filter((e) => e.action === "deny").map((e) => e.cidr)));
  p.push(...new Set(protectedPrefixClashes([...protectedEntries, ...managementProtected(management)])));
  return {
    socket,
    dataDir: parseString("data_dir", f.get("data_dir"), p),
    logLevel: parseLogLevel("log_level", f.get("log_level"), p),
    dns: {
      listenAddr,
      portMin,
      portMax,
      upstream: parseHostPort("dns.upstream", f.get("dns.upstream"), p, true) ?? "8.8.8.8:53",
      minTtlSeconds: Math.ceil(minTtl / 1000),
      answerCacheEntries: parseInteger("dns.answer_cache", f.get("dns.answer_cache"), DEFAULT_ANSWER_CACHE_ENTRIES, 0, MAX_ANSWER_CACHE_ENTRIES, p),
      quotas: {
        qps: quota("qps", "qps"),
        inflight: quota("inflight", "inflight"),
        learned: quota("learned", "learned"),
        answerRecords: quota("answerRecords", "answer_records"),
        tcpConnections: quota("tcpConnections", "tcp_connections"),
        tcpPerSource: quota("tcpPerSource", "tcp_per_source"),
      },
      refuseTypes: parseQueryTypes("dns.refuse_types", f.get("dns.refuse_types"), p),
      portGuard: parseBoolean("dns.port_guard", f.get("dns.port_guard"), true, p),
      portGuardCgroup,
    },
    controlPlane: {
      url: parseHostPortList("control_plane.url", f.get("control_plane.url"), p),
      subscribeAckTimeoutMs: parseDuration("control_plane.subscribe_ack_timeout", f.get("control_plane.subscribe_ack_timeout"), 5000, p),
      heartbeatIntervalMs: parseDuration("control_plane.heartbeat_interval", f.get("control_plane.heartbeat_interval"), 30_000, p),
      tls: anyTls ? { ca: tlsCa, cert: tlsCert, key: tlsKey } : null,
      token: parseString("control_plane.token", f.get("control_plane.token"), p),
    },
    metadata: parseStringMap("metadata", f.get("metadata"), p),
    defaultPolicy: {
      mode: parseFilterMode("default_policy.mode", f.get("default_policy.mode"), "disabled", p),
      audit: parseBoolean("default_policy.audit", f.get("default_policy.audit"), false, p),
      allowCidrs: parseCidrRules("default_policy.allow_cidrs", f.get("default_policy.allow_cidrs"), p),
      denyCidrs: parseCidrRules("default_policy.deny_cidrs", f.get("default_policy.deny_cidrs"), p),
      dns: {
        mode: parseDnsMode("default_policy.dns.mode", f.get("default_policy.dns.mode"), "disabled", p),
        allowDomains: parseDomainRules("default_policy.dns.allow_domains", f.get("default_policy.dns.allow_domains"), p),
        denyDomains: parseDomainRules("default_policy.dns.deny_domains", f.get("default_policy.dns.deny_domains"), p),
        upstreams: parseStringList("default_policy.dns.upstreams", f.get("default_policy.dns.upstreams"), p).filter(
          (u, i) => parseHostPort(`default_policy.dns.upstreams[${i}]`, u, p, true) !== null,
        ),
      },
    },
    protected: protectedEntries,
    management,
    bpf: { pinRoot, loaderPath: parseString("bpf.loader_path", f.get("bpf.loader_path"), p), attachMethod: parseAttachMethod("bpf.attach_method", f.get("bpf.attach_method"), p) },
    restore: parseBoolean("restore", f.get("restore"), true, p),
    cgroupRoot,
    metrics: { listen: parseHostPort("metrics.listen", f.get("metrics.listen"), p, true) },
    history: {
      maxEntries: parseInteger("history.max_entries", f.get("history.max_entries"), 10_000, 10, 100_000, p),
      maxAgeMs: parseDuration("history.max_age", f.get("history.max_age"), 30 * 24 * 3600_000, p),
    },
  };
}
