import type { Cidr } from "@netfence/proto/parse";
import type { PolicyModeName } from "@netfence/proto/modes";

/**
 * What the policy model compiles to and the data-path driver enforces: one entry per unique
 * prefix, a mode and the audit flag. Defined here, with the model; the driver (datapath/)
 * depends on these types, never the other way round.
 */

/** Policy modes. The driver maps them onto `enum nf_mode` in bpf/include/netfence.h. */
export type FilterMode = PolicyModeName;

/**
 * One kernel entry: a unique prefix with what it says. The compile step merges rules so each
 * prefix appears once (allow and deny may both be set: deny wins at equal prefix length).
 */
export interface FilterEntry {
  readonly cidr: Cidr;
  readonly allow: boolean;
  readonly deny: boolean;
  /** Wall-clock deadline in ms since the epoch; null = never expires. Checked in the kernel. */
  readonly expiresAtMs: number | null;
  /** Opaque rule number reported with packet events (0 = none). */
  readonly ruleId?: number;
}

export interface FilterPolicy {
  readonly mode: FilterMode;
  /** Evaluate and report, but let blocked packets pass (counted as audited). */
  readonly audit: boolean;
  readonly entries: readonly FilterEntry[];
}
