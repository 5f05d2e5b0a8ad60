/**
 * Per-attachment DNS quotas (SPEC §8, tenant isolation): what one tenant's DNS server may consume,
 * so that it cannot starve or exhaust the others. Defaults come from `dns.quotas.*` in the config;
 * an attachment may override any of them with `netfence.dns.*` metadata at attach time.
 * Over quota the tenant gets REFUSED or SERVFAIL and an event; other tenants are unaffected.
 */
export interface DnsQuotas {
  /** Queries per second (token bucket refilled continuously, burst of one second). */
  readonly qps: number;
  /** Upstream queries in flight at once for this attachment. */
  readonly inflight: number;
  /** DNS-learned addresses held for this attachment (kernel entries and daemon memory). */
  readonly learned: number;
  /** A/AAAA records taken from one answer; the rest are removed from the reply. */
  readonly answerRecords: number;
  /** Open TCP connections to this attachment's server. */
  readonly tcpConnections: number;
  /** Open TCP connections from one source address. */
  readonly tcpPerSource: number;
}

export const DEFAULT_DNS_QUOTAS: DnsQuotas = {
  qps: 1000,
  inflight: 128,
  learned: 16384,
  answerRecords: 32,
  tcpConnections: 32,
  tcpPerSource: 8,
};

/** Largest value accepted for each quota (config and metadata), to keep typos from disabling them. */
export const DNS_QUOTA_LIMITS: Readonly<Record<keyof DnsQuotas, number>> = {
  qps: 1_000_000,
  inflight: 65_536,
  learned: 1_000_000,
  answerRecords: 1024,
  tcpConnections: 4096,
  tcpPerSource: 4096,
};
