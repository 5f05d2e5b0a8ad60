import type { FilterMode } from "../policy/compiled.js";

/**
 * What NF_OP_LOOKUP (explain) answers for one destination: the facts packets read now, from the
 * kernel maps themselves. Decoded by lookup-wire.ts; the verdict is decided from them by
 * explain/verdict.ts.
 */

/** A host-wide protected trie's longest match for the address, and the scope it carries. */
export interface ProtectedMatch {
  readonly prefixLen: number;
  /** 0 = any protocol / any port. */
  readonly protocol: number;
  readonly port: number;
}

/** The policy entry the data path's lookup (exact, then LPM) finds for the address. */
export interface KernelMatch {
  /** The entry's prefix, canonical ("10.0.0.0/8", "192.0.2.7/32"). */
  readonly cidr: string;
  readonly prefixLen: number;
  readonly allow: boolean;
  readonly deny: boolean;
  readonly ruleId: number;
  /** Wall-clock deadline in ms (rounded up); null = never expires. */
  readonly expiresAtMs: number | null;
  /** Which map answered: the small exact hash, the large exact table, or the LPM trie. */
  readonly table: "small-exact" | "large-exact" | "lpm";
}

/** What packets to the address read now: the attachment's live settings and the maps' answers. */
export interface KernelLookup {
  readonly mode: FilterMode;
  readonly audit: boolean;
  /** NF_GUARD_* bits. */
  readonly guards: number;
  readonly dnsIp4: string | null;
  readonly dnsIp6: string | null;
  readonly dnsPort: number;
  readonly dnsPortMin: number;
  readonly dnsPortMax: number;
  /** Entries in the host-wide protected sets (0: the program skips that lookup). */
  readonly protectedCount: number;
  readonly protectedDenyCount: number;
  readonly match: KernelMatch | null;
  /** Expired entries the lookup stepped over (an expired TTL not yet garbage-collected). */
  readonly expiredSkipped: number;
  readonly protectedAllow: ProtectedMatch | null;
  readonly protectedDeny: ProtectedMatch | null;
  /** Layout 6: the matching entry's scope set and its answer for the packet asked about (null: not scoped). */
  readonly scoped: ScopedAnswer | null;
  /** Scoped prefixes stepped over because none of their rules matched the packet. */
  readonly scopedSkipped: number;
  /** The walk ran out of hops: the program drops the packet ("policy-depth"). */
  readonly depthExhausted: boolean;
}

/** What a matching entry's scope set answered (match.allow/deny already include it). */
export interface ScopedAnswer {
  readonly scope: number;
  readonly allow: boolean;
  readonly deny: boolean;
  readonly ruleId: number;
}

/** The packet a layout-6 LOOKUP evaluates scoped entries for; uid/gid null = unknown. */
export interface LookupPacket {
  readonly protocol: number;
  /** Destination port (0 for protocols without ports). */
  readonly port: number;
  readonly uid: number | null;
  readonly gid: number | null;
}
