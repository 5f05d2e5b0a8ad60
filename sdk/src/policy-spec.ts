/**
 * Plain TypeScript values a control-plane author works with (no protobuf in sight).
 * to-wire.ts turns them into netfence.v1 messages; from-wire.ts turns daemon events into them.
 */

import type { DnsModeName, PolicyModeName } from "@netfence/proto/modes";

export type Mode = PolicyModeName;
export type DnsMode = DnsModeName;

/**
 * Extension (issue 15): what a rule is limited to besides its addresses — the rule matches a packet
 * only when all of the given lists match it (an empty or absent list matches everything). A Netfence
 * daemon enforces it; a Go-original daemon ignores the field and applies the rule unscoped.
 *   protocols  "tcp", "udp", "icmp", "icmpv6", "sctp" or numbers 1..255
 *   ports      destination ports: 443, "8000-8100"; only with tcp, udp, sctp (ports alone = tcp and udp)
 *   users      socket owner: user names or uids; groups: group names or gids — resolved by the daemon
 *              when it applies the rule (unknown name = the command is rejected); cgroup attachments only
 * Validated when the command is built (an invalid scope throws INVALID_ARGUMENT naming the field).
 */
export interface ScopeSpec {
  readonly protocols?: readonly (string | number)[];
  readonly ports?: readonly (number | string)[];
  readonly users?: readonly (string | number)[];
  readonly groups?: readonly (string | number)[];
}

/**
 * A CIDR ("10.0.0.0/8", "2001:db8::/32", a bare address) with an optional TTL counted from when the
 * daemon receives it, and an optional scope: (cidr, scope) names a rule, so the same CIDR may be
 * allowed with several scopes (remove-cidr removes all of them).
 */
export interface CidrSpec {
  readonly cidr: string;
  readonly ttlSeconds?: number;
  readonly scope?: ScopeSpec;
}

/** "*.example.com" is the same as { domain: "example.com", includeSubdomains: true }. A scope limits
 * the addresses the name's answers open (allow rules only: a deny rule refuses the name itself). */
export interface DomainSpec {
  readonly domain: string;
  readonly includeSubdomains?: boolean;
  readonly scope?: ScopeSpec;
}

/** Extension (issue 15): connections set up while allowed survive a change that would block them
 * ("keep": TCP only) or are cut at their next packet ("sever", the default and the Go original's behaviour). */
export type EstablishedSpec = "keep" | "sever";

export interface DnsSpec {
  readonly mode: DnsMode;
  readonly allow?: readonly (string | DomainSpec)[];
  readonly deny?: readonly (string | DomainSpec)[];
  /** "ip" or "ip:port" resolvers overriding the daemon default. */
  readonly upstreams?: readonly string[];
}

/** A whole attachment policy: what SubscribedAck and BulkUpdate carry. */
export interface PolicySpec {
  readonly mode: Mode;
  readonly allow?: readonly (string | CidrSpec)[];
  readonly deny?: readonly (string | CidrSpec)[];
  /**
   * Absent in a BulkUpdate: DNS rules stay as they are (the SDK sets the keep_dns extension; a
   * Go-original daemon clears them). Absent in a SubscribedAck: DNS filtering starts disabled.
   */
  readonly dns?: DnsSpec;
  /**
   * Extension (fleet control plane): an opaque version of this policy. It travels in the
   * SubscribedAck/BulkUpdate and a Netfence daemon echoes it in CommandOutcome.policyVersion once
   * the kernel holds the policy. Part of the policy's identity: a new version is a new policy.
   */
  readonly version?: string;
  /**
   * Audit mode (extension): evaluate and report, never drop on the policy's account — what the mode
   * would block passes and is reported as a "would block" (VERDICT_AUDIT) event. A policy restates
   * it: absent = false = enforcing (in a BulkUpdate too). A Go-original daemon ignores it and enforces.
   */
  readonly audit?: boolean;
  /** Keep or sever (extension, issue 15). A policy restates it: absent = "sever" (in a BulkUpdate too). */
  readonly established?: EstablishedSpec;
}

/** One command for one attachment. */
export type Command =
  /** audit absent: the attachment's audit mode stays as it is; true/false turns it on/off. */
  | { readonly kind: "set-mode"; readonly mode: Mode; readonly audit?: boolean }
  | { readonly kind: "allow-cidr"; readonly cidr: string; readonly ttlSeconds?: number; readonly scope?: ScopeSpec }
  | { readonly kind: "deny-cidr"; readonly cidr: string; readonly ttlSeconds?: number; readonly scope?: ScopeSpec }
  | { readonly kind: "remove-cidr"; readonly cidr: string }
  | { readonly kind: "bulk-update"; readonly policy: PolicySpec }
  | { readonly kind: "set-dns-mode"; readonly mode: DnsMode }
  | { readonly kind: "allow-domain"; readonly domain: string; readonly includeSubdomains?: boolean; readonly scope?: ScopeSpec }
  | { readonly kind: "deny-domain"; readonly domain: string; readonly includeSubdomains?: boolean }
  | { readonly kind: "remove-domain"; readonly domain: string };

/** The daemon's answer to one command (the CommandResult extension event). */
export interface CommandOutcome {
  readonly commandId: string;
  readonly attachmentId: string;
  readonly applied: boolean;
  /** Why it was rejected; null when applied. Nothing changed on the daemon when rejected. */
  readonly error: string | null;
  /** Applied without these bad entries (only when the daemon was not asked for strict validation). */
  readonly skipped?: readonly string[];
  /** The PolicySpec.version the daemon now holds in the kernel (applied SubscribedAck/BulkUpdate with a version). */
  readonly policyVersion?: string;
}

export interface DaemonInfo {
  readonly daemonId: string;
  readonly hostname: string;
  readonly metadata: Readonly<Record<string, string>>;
}

export interface AttachmentInfo {
  readonly id: string;
  /** Interface name or cgroup path. */
  readonly target: string;
  readonly type: "interface" | "cgroup" | "unspecified";
  readonly mode: Mode | "unspecified";
  readonly dnsMode: DnsMode | "unspecified";
  /** "ip:port" of the attachment's DNS server; "" for attachments listed in a SyncRequest (not carried there). */
  readonly dnsAddress: string;
  readonly metadata: Readonly<Record<string, string>>;
}

export interface AttachmentStatsInfo {
  readonly id: string;
  readonly packetsAllowed: bigint;
  readonly packetsBlocked: bigint;
  readonly dnsQueriesAllowed: bigint;
  readonly dnsQueriesBlocked: bigint;
  /** Extension (issue 14): rules whose kernel hit count moved since the previous heartbeat (total counts). */
  readonly ruleHits: readonly RuleHitsInfo[];
  /** Rules that moved but did not fit this heartbeat (they come in a later one). */
  readonly ruleHitsOmitted: number;
  /** Audit mode: packets that would have been blocked and passed (0 from a Go-original daemon). */
  readonly packetsAudited: bigint;
  /** Packet events lost because the daemon's kernel ring buffer was full. */
  readonly eventsLost: bigint;
}

/** One rule's kernel hit counter, as a heartbeat carries it (see `netfenced rules` for the rule texts). */
export interface RuleHitsInfo {
  readonly ruleId: number;
  readonly rule: string;
  readonly packets: bigint;
  /** Wall-clock ms of the last hit; 0 = never. */
  readonly lastHitMs: number;
}

export type UnsubscribeReason = "removed" | "detached" | "error" | "unspecified";

export interface DnsQuery {
  readonly attachmentId: string;
  /** The queried name in canonical form: lower case, no trailing dot ("svc.example"), whichever form the daemon sent. */
  readonly domain: string;
  /** The question name as the daemon sent it (Netfence and the Go original: as asked, with its trailing dot). */
  readonly questionName?: string;
  /** "A", "AAAA", … */
  readonly queryType: string;
}

export interface DnsDecision {
  readonly allow: boolean;
  /** Add the answer's addresses to the attachment's IP allowlist. */
  readonly addToFilter?: boolean;
  /** Answer with these addresses instead of resolving upstream. */
  readonly ips?: readonly string[];
  readonly ttlSeconds?: number;
}
