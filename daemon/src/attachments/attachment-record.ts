import type { AttachMethod, TargetSpec } from "../datapath/filter.js";
import { toStoredRule, type StoredAttachment, type StoredCidrRule, type StoredPolicy } from "../store/snapshot.js";
import { packLearned } from "./learned-store.js";
import type { AttachmentView } from "./attachment-view.js";
import type { DnsServerHandle } from "../dns/dns-servers.js";
import type { PolicyState } from "../policy/policy-state.js";
import type { AttachOptions } from "./attach-options.js";

/** One live attachment as the manager keeps it (the manager is its only writer). */
export interface AttachmentRecord {
  readonly id: string;
  readonly slot: number;
  readonly target: TargetSpec;
  /** Identity of the target (see target.ts `targetKey`), to refuse a second attach. */
  readonly key: string;
  /** The target as the caller gave it. */
  readonly targetText: string;
  readonly dnsPort: number;
  readonly dnsAddress: string;
  readonly metadata: Readonly<Record<string, string>>;
  /** Parsed from the `netfence.*` keys of `metadata` (attach-options.ts). */
  readonly options: AttachOptions;
  readonly attachedAtMs: number;
  readonly method: AttachMethod;
  /** ifindex at attach time (a re-created interface has another one); 0 for cgroups. */
  readonly ifindex: number;
  readonly state: PolicyState;
  dns: DnsServerHandle | null;
  /** Persisted form; null when the state changed since it was built. */
  stored: StoredAttachment | null;
}

export function recordView(rec: AttachmentRecord): AttachmentView {
  return {
    id: rec.id,
    target: rec.targetText,
    type: rec.target.kind,
    mode: rec.state.mode,
    audit: rec.state.audit,
    dnsMode: rec.state.dns.mode,
    dnsAddress: rec.dnsAddress,
    metadata: rec.metadata,
    attachedAtMs: rec.attachedAtMs,
    method: rec.method,
  };
}

/** Persisted form, built from the rule index keys (no re-formatting of every prefix). */
export function recordToStored(rec: AttachmentRecord): StoredAttachment {
  const st = rec.state;
  const allowCidrs: StoredCidrRule[] = [];
  const denyCidrs: StoredCidrRule[] = [];
  for (const [key, r] of st.rules) {
    if (r.allow !== null) allowCidrs.push({ cidr: key, expiresAtMs: r.allow.expiresAtMs });
    if (r.deny !== null) denyCidrs.push({ cidr: key, expiresAtMs: r.deny.expiresAtMs });
    // Scoped rules (issue 15) with their scopes; restored as they were (snapshot.ts loadPolicy).
    for (const s of r.scoped ?? []) {
      if (s.allow !== null) allowCidrs.push(toStoredRule(key, s.allow));
      if (s.deny !== null) denyCidrs.push(toStoredRule(key, s.deny));
    }
  }
  const policy: StoredPolicy = { mode: st.mode, audit: st.audit, allowCidrs, denyCidrs, dns: st.dns, ...st.establishedField() };
  const learned = packLearned(st.learned);
  const origins = st.origins.toStored();
  return {
    id: rec.id,
    slot: rec.slot,
    target: rec.target,
    targetText: rec.targetText,
    dnsPort: rec.dnsPort,
    metadata: rec.metadata,
    attachedAtMs: rec.attachedAtMs,
    method: rec.method,
    ifindex: rec.ifindex,
    policy,
    learned: [],
    learnedPacked: learned,
    ...(origins !== undefined ? { origins } : {}),
  };
}
