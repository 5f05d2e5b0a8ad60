import type { AttachSpec, FilterEntry, FilterMode, PortGuardSpec, ProtectedEntry, RuleHitCount, TamperFinding } from "./filter.js";

/**
 * The FakeFilter's "bpffs" (unit tests only): its pins outlive a FakeFilter, so restart and adopt
 * are tested by building a second FakeFilter over the same FakeBpffs.
 */

export interface FakePinned {
  spec: AttachSpec;
  mode: FilterMode;
  audit: boolean;
  entries: Map<string, FilterEntry>;
  allowed: bigint;
  blocked: bigint;
  /** Set to true to make the target look gone to the fake (tests). */
  targetGone: boolean;
  /** Set to true to simulate a filter that is pinned but no longer attached (`tc filter del`). */
  detached?: boolean;
  /** Per-rule hit counters (nf_hits), by rule id; sendPacket counts them. */
  hits?: Map<number, RuleHitCount>;
  /** Set to simulate pins of another layout: adopt and inspect refuse them (PINNED_LAYOUT). */
  layout?: number;
}

export class FakeBpffs {
  readonly pinned = new Map<string, FakePinned>();
  /** Pins a migration moved aside (<pin_root>/_migrating-<id>): still attached, still enforcing. */
  readonly aside = new Map<string, FakePinned>();
  /** Tampering `verify` reports (tests set it); cleared by the repair each finding names. */
  readonly tamper = new Map<string, TamperFinding[]>();
  protectedEntries: readonly ProtectedEntry[] = [];
  portGuard: PortGuardSpec | null = null;
}
