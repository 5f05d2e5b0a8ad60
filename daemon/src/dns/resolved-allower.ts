/**
 * The seam between a DNS server and the data path: "something that can allow resolved IPs"
 * (implemented by the attachment manager, which remembers which name produced which address).
 * The returned promise resolves only once the addresses are in the kernel map, so the DNS
 * answer can be released without racing the workload's first connect. It tells which addresses
 * were NOT opened (the rebinding guard, the learned-address quota), so the server can take them
 * out of the reply: the workload only sees what it may reach.
 */
export interface ResolvedAddress {
  readonly family: 4 | 6;
  readonly address: string;
}

export interface RefusedResolved {
  readonly name: string;
  /** As given to allowResolved. */
  readonly address: string;
  /** Why (e.g. "deny-cidr", "metadata", "host-address"); "quota" = over the learned-address quota. */
  readonly reason: string;
}

export interface AllowOutcome {
  readonly refused: readonly RefusedResolved[];
}

export const NOTHING_REFUSED: AllowOutcome = { refused: [] };

/** The refusal reason of the learned-address quota: the query is answered SERVFAIL. */
export const QUOTA_REFUSAL = "quota";

export interface ResolvedAllower {
  /** Resolves when the allowed addresses are in the map; `void` = nothing refused. */
  allowResolved(attachmentId: string, name: string, addresses: readonly ResolvedAddress[], ttlSeconds: number): Promise<AllowOutcome | void>;
}
