import type { Cidr, RuleScope } from "@netfence/proto/parse";
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
  /**
   * Scoped rules on this same prefix (issue 15). `allow`/`deny` above are the UNSCOPED rules' flags
   * (both may be false when the prefix has only scoped rules). A packet that matches the prefix but
   * none of its rules (unscoped or scoped) is decided by the next shorter prefix, as if this entry
   * did not exist (docs/operator-guide.md "Scoped rules"). Absent or empty = no scoped rule.
   */
  readonly scoped?: readonly ScopedRuleEntry[];
}

/** One scoped rule on a prefix, as the driver compiles it into the kernel's scope table. */
export interface ScopedRuleEntry {
  readonly scope: RuleScope;
  readonly allow: boolean;
  readonly deny: boolean;
  readonly ruleId: number;
  /** Wall-clock deadline in ms since the epoch; null = never expires. */
  readonly expiresAtMs: number | null;
}

export interface FilterPolicy {
  readonly mode: FilterMode;
  /** Evaluate and report, but let blocked packets pass (counted as audited). */
  readonly audit: boolean;
  readonly entries: readonly FilterEntry[];
  /** Keep TCP connections set up while allowed when a change would block them (NF_SETTING_KEEP). Absent: sever. */
  readonly keepEstablished?: boolean;
}
