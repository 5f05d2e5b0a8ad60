import type pino from "pino";
import type { DnsPolicy } from "../policy/policy.js";
import type { DnsListen, DnsServerFactory, DnsServerHandle, DnsServerOptions } from "./dns-servers.js";
import { AttachmentDnsServer } from "./dns-server.js";
import type { DnsServerDetailedStats } from "./dns-server.js";
import type { DnsProxy } from "./dns-proxy.js";
import type { DnsEventSink } from "./dns-events.js";
import type { DnsOutcomeHook } from "./dns-outcomes.js";
import { bindFirstFree, HeldDnsPort, type PortTaken } from "./dns-port.js";
import { HostAddresses } from "./host-addresses.js";
import type { LearnedAddressSink } from "./learned-sink.js";
import { DEFAULT_UPSTREAM_OPTIONS, UpstreamPool, parseUpstreamAddress } from "./upstream.js";

/**
 * How the attachment manager starts DNS servers: one factory per daemon holds the shared parts
 * (default upstreams, the LearnedAddressSink, the control-plane proxy, one upstream socket pool, the
 * host's addresses, the event sink) and starts a server per attachment with its own quotas,
 * refused query types and source rule. Ports are allocated by binding (`reservePort`).
 */

/** A started server, with what the DNS tests and benchmarks read besides the manager's handle. */
export interface AttachmentDnsServerHandle extends DnsServerHandle {
  /** "ip:port" ("[ip]:port" for IPv6) actually bound. */
  readonly address: string;
  /** Counts by outcome, for metrics. */
  detailedStats(): DnsServerDetailedStats;
  outcomes(): Readonly<Record<string, number>>;
}

/** The DnsServerFactory of dns-servers.ts, with allocation by binding always available. */
export interface AttachmentDnsServerFactory extends DnsServerFactory {
  start(attachmentId: string, listen: DnsListen, getPolicy: () => DnsPolicy, options?: DnsServerOptions): Promise<AttachmentDnsServerHandle>;
  reservePort(host: string, candidates: readonly number[]): Promise<{ held: HeldDnsPort; taken: readonly PortTaken[] }>;
}

export interface DnsServerFactoryOptions {
  readonly defaultUpstreams: readonly string[];
  readonly learned: LearnedAddressSink;
  readonly proxy?: DnsProxy;
  readonly minTtlSeconds?: number;
  /** Answer cache entries per attachment (default DEFAULT_ANSWER_CACHE_ENTRIES; 0 = none). */
  readonly answerCacheEntries?: number;
  readonly logger: pino.Logger;
  readonly upstreamTimeoutMs?: number;
  readonly proxyTimeoutMs?: number;
  /** Shared with the rebinding guard; one of its own when absent. */
  readonly hostAddresses?: HostAddresses;
  readonly report?: DnsEventSink;
  /** Every DNS outcome counted by any attachment's server (host-wide metrics). */
  readonly onOutcome?: DnsOutcomeHook;
}

export function createDnsServerFactory(opts: DnsServerFactoryOptions): AttachmentDnsServerFactory {
  for (const upstream of opts.defaultUpstreams) parseUpstreamAddress(upstream); // INVALID_ARGUMENT at startup
  const pool = new UpstreamPool({ ...DEFAULT_UPSTREAM_OPTIONS, timeoutMs: opts.upstreamTimeoutMs ?? DEFAULT_UPSTREAM_OPTIONS.timeoutMs });
  const hostAddresses = opts.hostAddresses ?? new HostAddresses();
  const start = async (
    attachmentId: string,
    listen: DnsListen,
    getPolicy: () => DnsPolicy,
    options?: DnsServerOptions,
  ): Promise<AttachmentDnsServerHandle> => {
    const server = await AttachmentDnsServer.start({
      attachmentId,
      listen,
      held: options?.held instanceof HeldDnsPort ? options.held : undefined,
      getPolicy,
      defaultUpstreams: opts.defaultUpstreams,
      learned: opts.learned,
      proxy: opts.proxy,
      minTtlSeconds: opts.minTtlSeconds,
      answerCacheEntries: opts.answerCacheEntries,
      logger: opts.logger,
      upstreamPool: pool,
      proxyTimeoutMs: opts.proxyTimeoutMs,
      quotas: options?.quotas,
      refuseTypes: options?.refuseTypes,
      kind: options?.kind,
      workloadAddresses: options?.workloadAddresses,
      hostAddresses,
      report: opts.report,
      onOutcome: opts.onOutcome,
    });
    return {
      address: server.address,
      stop: () => server.stop(),
      stats: () => server.stats(),
      detailedStats: () => server.detailedStats(),
      outcomes: () => server.detailedStats().outcomes,
    };
  };
  return { start, reservePort: bindFirstFree };
}
