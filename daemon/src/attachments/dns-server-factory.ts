import type { DnsPolicy } from "../policy/policy.js";

/**
 * What the attachment manager needs to run one attachment's DNS server (implemented in dns/ by
 * the DNS server module, injected by the composition root). `getPolicy` is read per query, so
 * policy commands take effect without restarting the server. The server reports resolved
 * addresses through the ResolvedAllower it was built with (the manager).
 */
export interface DnsListen {
  readonly host: string;
  readonly port: number;
}

export interface DnsServerStats {
  readonly allowed: bigint;
  readonly blocked: bigint;
}

export interface DnsServerHandle {
  stop(): Promise<void>;
  stats(): DnsServerStats;
}

export interface DnsServerFactory {
  start(attachmentId: string, listen: DnsListen, getPolicy: () => DnsPolicy): Promise<DnsServerHandle>;
}
