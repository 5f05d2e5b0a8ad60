import type { StoredOrigins } from "../policy/rule-origins.js";
import { formatCidr, parseCidr } from "@netfence/proto/parse";
import type { AttachMethod, TargetSpec } from "../datapath/filter.js";
import type { AttachmentPolicy, CidrRule } from "../policy/policy.js";

/** The persisted shape (JSON). CIDRs are stored as canonical text; times as ms since the epoch. */
export interface StoreSnapshot {
  readonly version: 1;
  readonly daemonId: string;
  readonly attachments: readonly StoredAttachment[];
}

export interface StoredCidrRule {
  readonly cidr: string;
  readonly expiresAtMs: number | null;
}

export interface StoredPolicy {
  readonly mode: AttachmentPolicy["mode"];
  readonly audit: boolean;
  readonly allowCidrs: readonly StoredCidrRule[];
  readonly denyCidrs: readonly StoredCidrRule[];
  readonly dns: AttachmentPolicy["dns"];
}

export interface StoredLearned {
  readonly name: string;
  readonly address: string;
  readonly expiresAtMs: number;
}

export interface StoredAttachment {
  readonly id: string;
  readonly slot: number;
  readonly target: TargetSpec;
  /** The target as the caller gave it (list/Subscribed show this). */
  readonly targetText: string;
  readonly dnsPort: number;
  readonly metadata: Readonly<Record<string, string>>;
  readonly attachedAtMs: number;
  readonly method: AttachMethod;
  readonly ifindex: number;
  readonly policy: StoredPolicy;
  /** The old one-object-per-address form: still read, written empty (see attachments/learned-store.ts). */
  readonly learned: readonly StoredLearned[];
  /** Learned addresses, columnar (absent in files written before it existed). */
  readonly learnedPacked?: PackedLearned;
  /** Where the rules came from (explain; policy/rule-origins.ts). Absent in older files, or when nothing is recorded. */
  readonly origins?: StoredOrigins;
}

const toStoredRules = (rules: readonly CidrRule[]): StoredCidrRule[] =>
  rules.map((r) => ({ cidr: formatCidr(r.cidr), expiresAtMs: r.expiresAtMs }));
const fromStoredRules = (rules: readonly StoredCidrRule[]): CidrRule[] =>
  rules.map((r) => ({ cidr: parseCidr(r.cidr), expiresAtMs: r.expiresAtMs }));

export function storePolicy(p: AttachmentPolicy): StoredPolicy {
  return { mode: p.mode, audit: p.audit, allowCidrs: toStoredRules(p.allowCidrs), denyCidrs: toStoredRules(p.denyCidrs), dns: p.dns };
}

export function loadPolicy(p: StoredPolicy): AttachmentPolicy {
  return { mode: p.mode, audit: p.audit, allowCidrs: fromStoredRules(p.allowCidrs), denyCidrs: fromStoredRules(p.denyCidrs), dns: p.dns };
}

/** The compact stored form of an attachment's learned addresses (attachments/learned-store.ts packs and unpacks it). */
export interface PackedLearned {
  readonly format: 1;
  readonly names: readonly string[];
  readonly nameIndexBytes: 2 | 4;
  readonly nameIndex: string;
  readonly v4: string;
  readonly v6: string;
  readonly baseMs: number;
  readonly expiresAfterBase: string;
}
