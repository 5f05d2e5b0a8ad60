import type { FilterMode, AttachMethod } from "../datapath/filter.js";
import type { DnsModeName } from "../policy/policy.js";

/** What the rest of the daemon (RPC, control plane, metrics) may see of one attachment. */
export interface AttachmentView {
  readonly id: string;
  /** Interface name or cgroup path, as given by the caller. */
  readonly target: string;
  readonly type: "interface" | "cgroup";
  readonly mode: FilterMode;
  /** Audit mode: the policy reports what it would block and drops nothing. */
  readonly audit: boolean;
  readonly dnsMode: DnsModeName;
  /** "ip:port" of the attachment's DNS server. */
  readonly dnsAddress: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly attachedAtMs: number;
  readonly method: AttachMethod;
}

export interface AttachmentStatsView {
  readonly id: string;
  readonly packetsAllowed: bigint;
  readonly packetsBlocked: bigint;
  readonly packetsAudited: bigint;
  /** Packet events the kernel could not queue (ring buffer full). */
  readonly eventsLost: bigint;
  readonly dnsQueriesAllowed: bigint;
  readonly dnsQueriesBlocked: bigint;
}
