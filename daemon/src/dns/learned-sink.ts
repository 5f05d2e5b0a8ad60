import type { Cidr } from "@netfence/proto/parse";

/**
 * The seam between the DNS servers and the data path (DNS answer → kernel), in order:
 *
 *   dns-wire.ts readAnswerRecords   address records as bytes (/32, /128 Cidr): validated here, once
 *   answer-addresses.ts             the CNAME rule picks the chain end's addresses
 *   learned-inserter.ts             the one TTL floor, the one dedupe rule (policy/learned-dedupe.ts)
 *   ── LearnedAddressSink.write ──  (this interface)
 *   attachments/learned-writer.ts   the one coalescer: one queued operation per event-loop turn
 *   plan/learned-plan.ts            rebinding guard, learned-address quota, the kernel entries
 *   datapath Filter.upsertEntries   → wire-format.ts writes the loader frame from the bytes
 *
 * Addresses travel as bytes (a /32 or /128 Cidr, as read from the answer's rdata) from the DNS
 * wire to the loader frame: nothing on the way parses or re-formats them. The promise resolves
 * only once the addresses are in the kernel map, so the DNS reply is released without racing the
 * workload's first connect. It tells which addresses were NOT opened, so the server can take
 * them out of the reply: the workload only sees what it may reach.
 */
export interface LearnedItem {
  /** The queried name (the provenance BulkUpdate pruning and events refer to). */
  readonly name: string;
  /** Host prefixes (/32, /128) straight from the answer. */
  readonly addresses: readonly Cidr[];
  /** The TTL to hold them for, the floor already applied. */
  readonly ttlSeconds: number;
}

export interface RefusedAddress {
  readonly name: string;
  readonly address: Cidr;
  /** Why (e.g. "deny-cidr", "metadata", "host-address"); "quota" = over the learned-address quota. */
  readonly reason: string;
}

export interface LearnOutcome {
  readonly refused: readonly RefusedAddress[];
  /**
   * The earliest kernel deadline (ms) of the addresses of this write that were opened (an address
   * the kernel already allowed long enough keeps its own deadline, which may be earlier than the
   * answer's TTL); absent = now + TTL. The DNS server never relies on an address beyond it.
   */
  readonly heldUntilMs?: number;
}

export const NOTHING_REFUSED: LearnOutcome = { refused: [] };

/** The refusal reason of the learned-address quota: the query is answered SERVFAIL. */
export const QUOTA_REFUSAL = "quota";

export interface LearnedAddressSink {
  /** Resolves when the allowed addresses of every item are in the map, with the refused ones. */
  write(attachmentId: string, items: readonly LearnedItem[]): Promise<LearnOutcome>;
  /**
   * Changes whenever the data path may have closed an address this attachment learned before its
   * deadline (a deny rule, a re-check, a new policy): the DNS server then forgets what it wrote
   * recently and empties its answer cache. Reaching a deadline does not move it — the server never
   * relies on an address beyond the deadline the write reported (`LearnOutcome.heldUntilMs`).
   */
  epoch(attachmentId: string): number;
}
