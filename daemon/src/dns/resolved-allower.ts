/**
 * The seam between a DNS server and the data path: "something that can allow resolved IPs"
 * (implemented by the attachment manager, which remembers which name produced which address).
 * The returned promise resolves only once the addresses are in the kernel map, so the DNS
 * answer can be released without racing the workload's first connect.
 */
export interface ResolvedAddress {
  readonly family: 4 | 6;
  readonly address: string;
}

export interface ResolvedAllower {
  allowResolved(attachmentId: string, name: string, addresses: readonly ResolvedAddress[], ttlSeconds: number): Promise<void>;
}
