import type { Cidr } from "@netfence/proto/parse";
import type { FilterEntry, FilterMode, FilterPolicy } from "../policy/compiled.js";
import type { KernelLookup, LookupPacket } from "./kernel-lookup.js";

export type { FilterEntry, FilterMode, FilterPolicy };

/** One rule's hit counter (nf_hits, bpf/include/netfence.h), summed over CPUs. */
export interface RuleHitCount {
  readonly ruleId: number;
  readonly packets: bigint;
  /** Wall-clock ms of the latest hit (jiffy resolution); 0 = never. */
  readonly lastHitMs: number;
}

/**
 * The data-path driver's interface: everything the daemon needs from the kernel side.
 * Two implementations: KernelFilter (real eBPF through the loader child) and FakeFilter
 * (in memory, for unit tests only — kernel behaviour is proven by kernel tests).
 *
 * Every method is idempotent where it can be, validates its input before touching the kernel,
 * and throws NetfenceError (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, UNAVAILABLE, INTERNAL).
 */

export type TargetSpec =
  | { readonly kind: "interface"; readonly name: string; readonly direction: "ingress" | "egress" }
  | { readonly kind: "cgroup"; /** absolute path inside the cgroup2 mount */ readonly path: string };

/** Attach method actually used, chosen by probing the kernel (reported by status/list). */
export type AttachMethod = "tcx" | "clsact" | "cgroup-link";

/** Preference for interface attachments; "auto" probes TCX and falls back to clsact. */
export type AttachMethodPreference = "auto" | "tcx" | "clsact";

/**
 * What an attachment lets through besides its policy, and the anti-spoofing checks it makes.
 * The default (CLOSED_GUARDS) is the narrow always-allowed set of SPEC §6: the attachment's own
 * DNS server and IPv6 neighbour discovery (133, 135, 136 with hop limit 255 to link-local or
 * multicast), ARP on L2 devices; loopback and link-local destinations closed unless an explicit
 * allow entry covers them; non-IP frames, router advertisements and redirects dropped.
 */
export interface AttachGuards {
  /** 127.0.0.0/8 and ::1 are decided by the mode like any destination (default: only an explicit allow opens them). */
  readonly openLoopback: boolean;
  /** fe80::/10 and 169.254.0.0/16 likewise. */
  readonly openLinkLocal: boolean;
  /** DHCPv4 client broadcasts (udp 68 → 255.255.255.255:67). */
  readonly dhcp: boolean;
  /** DHCPv6 client (udp 546 → ff02::1:2 port 547). */
  readonly dhcpv6: boolean;
  /** MLD reports and done messages (ICMPv6 130-132, 143, hop limit 1, to ff02::/16). */
  readonly mld: boolean;
  /** The workload may send router advertisements and redirects (ICMPv6 134, 137): it is a router. */
  readonly router: boolean;
  /** L2 devices: frames that are neither IPv4, IPv6 nor ARP pass (default: dropped). */
  readonly allowNonIp: boolean;
  /** L2 devices: the workload's MAC ("aa:bb:cc:dd:ee:ff"); frames and ARP from another source MAC are dropped. */
  readonly workloadMac: string | null;
  /** The workload's own addresses: ARP replies and neighbour advertisements for any other address are dropped. */
  readonly workloadAddresses: readonly string[];
  /** Report the first allowed packet of each flow (once per flow per 60 s) as an "allowed" event. Absent: off. */
  readonly allowedFlows?: boolean;
}

export const CLOSED_GUARDS: AttachGuards = {
  openLoopback: false,
  openLinkLocal: false,
  dhcp: false,
  dhcpv6: false,
  mld: false,
  router: false,
  allowNonIp: false,
  workloadMac: null,
  workloadAddresses: [],
};

export interface AttachSpec {
  /** Attachment id: [A-Za-z0-9_-]{1,63}; names the pin directory /sys/fs/bpf/netfence/<id>/. */
  readonly id: string;
  /** Small integer unique among live attachments; carried in packet events. */
  readonly slot: number;
  readonly target: TargetSpec;
  /**
   * The attachment's DNS server (always allowed): IPv4 and/or IPv6 address and port. `portMin` /
   * `portMax` is the daemon's whole DNS port range: packets to another port of that range on the
   * same address are other tenants' DNS servers and are dropped in every mode (absent: no range).
   */
  readonly dns: { readonly ipv4: string | null; readonly ipv6: string | null; readonly port: number; readonly portMin?: number; readonly portMax?: number };
  readonly method?: AttachMethodPreference;
  /** Absent: CLOSED_GUARDS. */
  readonly guards?: AttachGuards;
}

export interface AttachResult {
  readonly method: AttachMethod;
  /** ifindex for interfaces, 0 for cgroups. */
  readonly ifindex: number;
}

export interface AdoptedAttachment {
  readonly id: string;
  readonly slot: number;
  readonly kind: "interface" | "cgroup";
  readonly method: AttachMethod;
  readonly ifindex: number;
  readonly mode: FilterMode;
  readonly audit: boolean;
  /**
   * The filter really runs where its pins say: its TCX/cgroup link is live, or its clsact filter
   * is still there with our program. False after `tc filter del`, a detached or unpinned link, or
   * a re-created interface: `relink` attaches it again.
   */
  readonly attached: boolean;
}

/** A pinned attachment as its pins describe it (for re-registering one the state store lost). */
export interface PinnedAttachment extends AdoptedAttachment {
  readonly direction: "ingress" | "egress";
  /** Cgroup attachments: id (inode number) of the cgroup the link is attached to; 0n if unknown. */
  readonly cgroupId: bigint;
  /** The DNS port the filter lets through (0 = none). */
  readonly dnsPort: number;
  /** Mode, audit flag and the live entries of the active generation, with their scoped rules (FilterEntry.scoped). */
  readonly policy: FilterPolicy;
  /** Why some scoped rules could not be read back exactly (datapath/scope-decode.ts); absent or null: all were. */
  readonly scopeProblem?: string | null;
}

/**
 * `details.reason` of the error `adopt` (and `inspect`) throw for pins written with another layout
 * (NF_LAYOUT_VERSION or magic of an older or newer loader, maps of another shape): the start-up
 * migrates such a stored attachment (attachments/migration.ts). A closed value, not a message.
 */
export const PINNED_LAYOUT = "pinned-layout";

export function isPinnedLayoutError(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { name?: unknown }).name === "NetfenceError" &&
    (err as { details?: { reason?: unknown } }).details?.reason === PINNED_LAYOUT;
}

/** Pins of another layout, moved aside for a migration (still attached until `finishMigration`). */
export interface MigrationInfo {
  /** nf_state.layout and .magic of the old pins (0 when unreadable). */
  readonly layout: number;
  readonly magic: number;
  /** The old program's id (0: its pin was gone). */
  readonly progId: number;
  readonly method: AttachMethod | null;
  /** finishMigration: an old filter or link was still attached and has been detached. */
  readonly detached: boolean;
}

/**
 * Tamper detection (issue 14): what someone else changed about an attachment. Closed set; the
 * `kind` label of netfence_tamper_detected_total and TamperReport.kind.
 */
export type TamperKind = "filter-detached" | "program-replaced" | "map-replaced" | "map-content" | "pins-removed";
export const TAMPER_KINDS: readonly TamperKind[] = ["filter-detached", "program-replaced", "map-replaced", "map-content", "pins-removed"];

export interface TamperFinding {
  readonly kind: TamperKind;
  readonly detail: string;
  /** What puts it right: attach again (relink), pin our objects again and rewrite nf_state's fixed fields (repin), replace the policy (rewrite). */
  readonly repair: "relink" | "repin" | "rewrite";
}

/** What `verify` checks besides the attach point and nf_state (always checked). */
export interface VerifyRequest {
  /** Open every pin and compare it with our object (a few system calls per pin). */
  readonly pins?: boolean;
  /** Checksum the active generation and compare it with what the daemon wrote. */
  readonly content?: boolean;
}

export interface FilterCounters {
  readonly allowed: bigint;
  readonly blocked: bigint;
  readonly audited: bigint;
  /** Events the kernel could not put on the ring buffer (full): NF_CNT_EVENTS_LOST. */
  readonly eventsLost: bigint;
}

/** "allowed": the first packet of a new flow of an attachment with allowed-flow events (netfence.events=allowed-flows). */
export type PacketVerdict = "blocked" | "audit" | "allowed";

/** A blocked (or audited) packet as reported by the kernel, after in-kernel throttling. */
export interface KernelPacketEvent {
  readonly timeMs: number;
  readonly slot: number;
  readonly attachmentId: string | null;
  /** 0 = an L2 frame dropped before any IP parsing (spoofed source MAC, bad ARP, non-IP). */
  readonly family: 0 | 4 | 6;
  readonly protocol: number;
  /** IP addresses; for family 0 the source and destination MAC addresses. */
  readonly src: string;
  readonly dst: string;
  readonly srcPort: number;
  /** Family 0: the ethertype. ICMP: the type. */
  readonly dstPort: number;
  readonly verdict: PacketVerdict;
  /** e.g. "mode:block-all", "not-in-allowlist", "deny-cidr", "local-closed", "spoofed" (REASONS in wire-format.ts) */
  readonly reason: string;
  /** The matching prefix, e.g. "10.0.0.0/8", or null. */
  readonly rule: string | null;
  /** Identical events folded into this one by throttling. */
  readonly suppressed: number;
  /** The sending socket's owner (cgroup attachments, issue 15); null = unknown (TC attachments, no socket). */
  readonly uid?: number | null;
  readonly gid?: number | null;
  /** The uid's user name (attachments/owner-events.ts); absent or null = none known. */
  readonly user?: string | null;
}

/**
 * A host-wide destination no command can change (operator config). "allow" (default): passes in
 * every mode (management access); "deny": dropped in every mode, and never opened by a DNS answer.
 * port 0 = any, protocol 0 = any.
 */
export interface ProtectedEntry {
  readonly cidr: Cidr;
  readonly protocol: number;
  readonly port: number;
  readonly action?: "allow" | "deny";
  /**
   * Issue 15 (management replies): `port` is the TCP SOURCE port of a stream socket bound to it (the
   * host's sshd answering). Matched by cgroup attachments only; a TC attachment ignores it (a workload
   * crafts any source port). Allow set only.
   */
  readonly from?: boolean;
}

/**
 * The DNS port guard: bind() to a port in [portMin, portMax] is refused to every process of the
 * cgroup (and its descendants) whose uid is not `uid`, so the DNS ports cannot be squatted.
 */
export interface PortGuardSpec {
  /** Absolute path of a cgroup v2 directory (the daemon uses the cgroup2 mount root by default). */
  readonly cgroupPath: string;
  readonly portMin: number;
  readonly portMax: number;
  /** The one uid allowed to bind in the range: the daemon's. */
  readonly uid: number;
}

export interface Filter {
  /** Loads, pins, installs `policy`, then attaches — enforcement starts with the full policy. On failure nothing is left behind. */
  attach(spec: AttachSpec, policy: FilterPolicy): Promise<AttachResult>;
  /** Detaches and removes the pins. Unknown id → NOT_FOUND. A vanished target is not an error. */
  detach(id: string): Promise<void>;
  /** Atomic full replacement (mode, audit flag, every entry): no half-applied state is ever visible. */
  replacePolicy(id: string, policy: FilterPolicy): Promise<void>;
  /** Insert or overwrite entries in the live policy (batched). */
  upsertEntries(id: string, entries: readonly FilterEntry[]): Promise<void>;
  /** Remove prefixes from the live policy; absent ones are ignored. */
  deleteEntries(id: string, cidrs: readonly Cidr[]): Promise<void>;
  setMode(id: string, mode: FilterMode, audit: boolean): Promise<void>;
  counters(ids: readonly string[]): Promise<Map<string, FilterCounters>>;
  /**
   * Per-rule hit counters of an attachment (nf_hits): the rule ids hit at least once, ascending,
   * among ids below `upto` and the overflow id (a per-CPU read costs per id and CPU; 0 = all).
   */
  ruleHits(id: string, upto?: number): Promise<RuleHitCount[]>;
  /** Zeroes the hit counters of rule ids about to be given to new rules (recycled ids). */
  clearRuleHits(id: string, ruleIds: readonly number[]): Promise<void>;
  /** Replaces the host-wide protected sets, allow and deny (shared by all attachments). */
  setProtected(entries: readonly ProtectedEntry[]): Promise<void>;
  /** Installs the DNS port guard, or updates it in place (pinned: it holds while the daemon is down). */
  setPortGuard(spec: PortGuardSpec): Promise<void>;
  /** Removes the DNS port guard, if one is installed. */
  removePortGuard(): Promise<void>;
  /** Ids of attachments pinned in bpffs (alive from a previous daemon or helper). */
  listPinned(): Promise<string[]>;
  /** Re-opens a pinned attachment so it can be driven again; incompatible pins → FAILED_PRECONDITION. */
  adopt(id: string): Promise<AdoptedAttachment>;
  /**
   * Attaches an adopted attachment's pinned program to `target` again (same maps, same policy),
   * after its clsact filter was deleted, its link detached or its interface re-created. A filter
   * still attached there is left as it is.
   */
  relink(id: string, target: TargetSpec, method?: AttachMethodPreference): Promise<AttachResult>;
  /**
   * Migration of pins of another layout (adopt threw PINNED_LAYOUT): moves them aside, still
   * attached and enforcing, so `attach` can re-create the attachment under the same id beside them.
   */
  beginMigration(id: string): Promise<MigrationInfo>;
  /** Detaches the old program set aside and removes its pins (the new attachment must be attached). */
  finishMigration(id: string): Promise<MigrationInfo>;
  /** Moves the pins set aside back (the new attachment must be detached first): nothing changed. */
  abortMigration(id: string): Promise<void>;
  /** Ids whose pins a migration set aside and did not finish (a crash in the middle). */
  listMigrating(): Promise<string[]>;
  /** Checks attachments against what this daemon made (tamper detection); an id maps to [] when all is well. */
  verify(requests: ReadonlyMap<string, VerifyRequest>): Promise<Map<string, TamperFinding[]>>;
  /** Pins our objects again where a pin is missing or names another object; rewrites nf_state's fixed fields. */
  restorePins(id: string): Promise<void>;
  /**
   * After adoption: the policy the kernel should hold (the state store's, deadlines passed or not),
   * so content checks can compare; replaced by every write from then on.
   */
  expectPolicy(id: string, policy: FilterPolicy): void;
  /** Adopts a pinned attachment and reads back what it is and enforces (orphans: pins the store lost). */
  inspect(id: string): Promise<PinnedAttachment>;
  /**
   * Explain: one destination looked up in the attachment's kernel maps as the data path does
   * (settings, the matching entry, the protected sets). Optional: only the kernel filter reads
   * maps; without it explain answers FAILED_PRECONDITION.
   */
  lookup?(id: string, family: 4 | 6, addr: Uint8Array, packet?: LookupPacket): Promise<KernelLookup>;
  /** Blocked/audited packet events; ends when the filter is closed. */
  events(): AsyncIterable<KernelPacketEvent>;
  /** How interface attachments are made on this kernel ("tcx" or "clsact"); "" when not known. */
  tcAttachMethod(): "tcx" | "clsact" | "";
  /** Where an attachment's entries live and the tables' sizes (NF_OP_TABLES; the map-usage metrics); absent: not known. */
  exactTables?(id: string): Promise<ExactTables>;
  /** sd_notify(3) `message` to `socket` ($NOTIFY_SOCKET), sent on the daemon's behalf. */
  notify(socket: string, message: string): Promise<void>;
  /** First step of a stop: a helper that exits from now on is not restarted. */
  stopSupervising(): void;
  /** Stops the helper; pinned filters keep enforcing. */
  close(): Promise<void>;
}

/** Where an attachment's active generation keeps its entries, per family (NF_OP_TABLES). */
export interface ExactTablesFamily {
  /** Capacity of the small exact hash (both generations share it) and the active generation's keys in it. */
  readonly smallCap: number;
  readonly smallCount: number;
  /** Capacity of the active generation's large exact table (0: none installed) and its keys. */
  readonly largeCap: number;
  readonly largeCount: number;
  /** Whether packets of the active generation look their exact entries up in the large table. */
  readonly usesLarge: boolean;
  /** Keys of the active generation in the LPM trie, and of those full-length ones (/32, /128). */
  readonly lpmCount: number;
  readonly lpmHostCount: number;
  /** Capacity of the inactive generation's large table (kept for reuse or not yet dropped); 0: none. */
  readonly otherLargeCap: number;
}
export interface ExactTables {
  readonly v4: ExactTablesFamily;
  readonly v6: ExactTablesFamily;
  /** Active-generation entries of the scope table (issue 15; layout 6). */
  readonly scopeCount?: number;
}
