import type pino from "pino";
import type { DnsPolicy } from "../policy/policy.js";
import type { DnsQuotas } from "./dns-quotas.js";
import { AttachmentDnsServer } from "./dns-server.js";
import type { DnsServerDetailedStats, DnsServerStats } from "./dns-server.js";
import type { DnsProxy } from "./dns-proxy.js";
import type { ResolvedAllower } from "./resolved-allower.js";
import { DEFAULT_UPSTREAM_OPTIONS, UpstreamPool } from "./upstream.js";
import { parseUpstreamAddress } from "./upstream-address.js";

/**
 * How the attachment manager starts DNS servers: one factory per daemon holds the shared parts
 * (default upstreams, the ResolvedAllower, the control-plane proxy, one upstream socket pool) and
 * starts a server per attachment.
 */

export interface DnsServerHandle {
  /** "ip:port" ("[ip]:port" for IPv6) actually bound. */
  readonly address: string;
  stop(): Promise<void>;
  stats(): DnsServerStats;
  /** Also SERVFAIL/FORMERR/dropped/CNAME-rejected counts, for metrics by outcome. */
  detailedStats(): DnsServerDetailedStats;
}

/** Structurally the `DnsServerOptions` of attachments/dns-server-factory.ts. */
export interface DnsServerOptions {
  readonly kind: "interface" | "cgroup";
  readonly quotas: DnsQuotas;
  readonly refuseTypes: readonly number[];
  readonly workloadAddresses: readonly string[];
}

/** Structurally the `DnsServerFactory` the attachment manager expects (attachments/dns-server-factory.ts). */
export interface DnsServerFactory {
  start(
    attachmentId: string,
    listen: { readonly host: string; readonly port: number },
    getPolicy: () => DnsPolicy,
    options: DnsServerOptions,
  ): Promise<DnsServerHandle>;
}

export interface DnsServerFactoryOptions {
  readonly defaultUpstreams: readonly string[];
  readonly allower: ResolvedAllower;
  readonly proxy?: DnsProxy;
  readonly minTtlSeconds?: number;
  readonly logger: pino.Logger;
  readonly upstreamTimeoutMs?: number;
  readonly proxyTimeoutMs?: number;
}

export function createDnsServerFactory(opts: DnsServerFactoryOptions): DnsServerFactory {
  for (const upstream of opts.defaultUpstreams) parseUpstreamAddress(upstream); // INVALID_ARGUMENT at startup
  const pool = new UpstreamPool({ ...DEFAULT_UPSTREAM_OPTIONS, timeoutMs: opts.upstreamTimeoutMs ?? DEFAULT_UPSTREAM_OPTIONS.timeoutMs });
  // TODO(issue 10): the server enforces options (quotas, refused types, sources).
  const start = async (
    attachmentId: string,
    listen: { readonly host: string; readonly port: number },
    getPolicy: () => DnsPolicy,
    _options: DnsServerOptions,
  ): Promise<DnsServerHandle> => {
    const server = await AttachmentDnsServer.start({
      attachmentId,
      listen,
      getPolicy,
      defaultUpstreams: opts.defaultUpstreams,
      allower: opts.allower,
      proxy: opts.proxy,
      minTtlSeconds: opts.minTtlSeconds,
      logger: opts.logger,
      upstreamPool: pool,
      proxyTimeoutMs: opts.proxyTimeoutMs,
    });
    return {
      address: server.address,
      stop: () => server.stop(),
      stats: () => server.stats(),
      detailedStats: () => server.detailedStats(),
    };
  };
  return { start };
}
