import type { DnsPolicy } from "../policy/policy.js";
import type { DnsQuotas } from "./dns-quotas.js";

/**
 * What the attachment manager needs to run one attachment's DNS server (implemented by
 * dns-server-factory.ts, injected by the composition root; unit tests inject a fake). `getPolicy` is read per query, so
 * policy commands take effect without restarting the server. The server reports resolved
 * addresses through the LearnedAddressSink it was built with (the learned-address writer).
 */
export interface DnsListen {
  readonly host: string;
  readonly port: number;
}

/** Queries answered (allowed) and refused (blocked) since start. */
export interface DnsServerStats {
  readonly allowed: bigint;
  readonly blocked: bigint;
}

export interface DnsServerHandle {
  stop(): Promise<void>;
  stats(): DnsServerStats;
  /** Every outcome counter (metrics), when the implementation keeps them. */
  outcomes?(): Readonly<Record<string, number>>;
}

/** A DNS port bound and held for an attachment until its server takes it over (or release). */
export interface HeldPort {
  readonly port: number;
  release(): Promise<void>;
}

export interface PortTakenByOther {
  readonly port: number;
  /** e.g. "uid 1000 (udp)" or "unknown". */
  readonly holder: string;
}

/** Per-attachment settings of a DNS server, fixed for its lifetime (from config defaults and `netfence.*` metadata). */
export interface DnsServerOptions {
  readonly kind: "interface" | "cgroup";
  readonly quotas: DnsQuotas;
  /** Query types answered REFUSED without asking anyone. */
  readonly refuseTypes: readonly number[];
  /** The workload's own addresses, when the attach named them (interfaces: the only sources answered). */
  readonly workloadAddresses: readonly string[];
  /** The port reserved by `reservePort`, handed over to the server (no window in which it is free). */
  readonly held?: HeldPort;
}

export interface DnsServerFactory {
  start(attachmentId: string, listen: DnsListen, getPolicy: () => DnsPolicy, options: DnsServerOptions): Promise<DnsServerHandle>;
  /**
   * Allocation by binding: binds the first free port of `candidates` (in order) on `host` and
   * holds it; ports held by other processes are skipped and returned. RESOURCE_EXHAUSTED when
   * none is free. Absent: the manager picks the lowest unused port and `start` binds it.
   */
  reservePort?(host: string, candidates: readonly number[]): Promise<{ held: HeldPort; taken: readonly PortTakenByOther[] }>;
}
