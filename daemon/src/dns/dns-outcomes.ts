/**
 * Per-attachment DNS counters by outcome (cumulative since the server started), read by
 * `list`/heartbeats (allowed, blocked) and by the metrics endpoint (every outcome):
 *
 *   allowed            a query decided allowed (forwarded, answered by the control plane or from the cache)
 *   cached             of those, answered from the answer cache (no upstream query, no kernel write)
 *   refused            REFUSED by the name policy (never sent upstream)
 *   refused-type       REFUSED by the query-type policy (`refuse_types`; never sent upstream)
 *   refused-cname      REFUSED: an explicitly denied name in the answer's CNAME chain
 *   cname-broken       a CNAME chain with a loop or too long: answered, nothing opened
 *   quota-qps          REFUSED: over the queries-per-second quota
 *   quota-inflight     SERVFAIL: over the upstream-queries-in-flight quota
 *   quota-learned      SERVFAIL: over the learned-address quota
 *   servfail           SERVFAIL: upstream failure or timeout, control plane unavailable, …
 *   formerr / notimp   malformed query / an opcode other than QUERY
 *   dropped            no reply: shorter than a header, a response, or too many pending
 *   foreign            no reply: a source this server does not answer (tenant isolation)
 *   tcp-rejected       TCP connections closed at once (connection quotas, foreign source)
 *   addresses-refused  A/AAAA records taken out of replies: the rebinding guard refused them
 *   records-trimmed    A/AAAA records taken out of replies: over the per-answer quota
 */
export const DNS_OUTCOMES = [
  "allowed", "refused", "refused-type", "refused-cname", "cname-broken", "quota-qps", "quota-inflight", "quota-learned",
  "servfail", "formerr", "notimp", "dropped", "foreign", "tcp-rejected", "addresses-refused", "records-trimmed", "cached",
] as const;

export type DnsOutcome = (typeof DNS_OUTCOMES)[number];

/** Every count of every attachment, host-wide (the metric `netfence_dns_queries_total{outcome}`). */
export type DnsOutcomeHook = (outcome: DnsOutcome, n: number) => void;

export class DnsOutcomes {
  private readonly counts = new Map<DnsOutcome, number>();

  constructor(private readonly onCount?: DnsOutcomeHook) {}

  count(outcome: DnsOutcome, n = 1): void {
    this.counts.set(outcome, (this.counts.get(outcome) ?? 0) + n);
    this.onCount?.(outcome, n);
  }

  get(outcome: DnsOutcome): number {
    return this.counts.get(outcome) ?? 0;
  }

  /** Queries refused by policy (name, type, CNAME chain): the "blocked" of list and heartbeats. */
  get blocked(): number {
    return this.get("refused") + this.get("refused-type") + this.get("refused-cname");
  }

  snapshot(): Readonly<Record<DnsOutcome, number>> {
    const out = {} as Record<DnsOutcome, number>;
    for (const o of DNS_OUTCOMES) out[o] = this.get(o);
    return out;
  }
}
