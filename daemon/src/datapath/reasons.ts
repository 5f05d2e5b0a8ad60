/**
 * enum nf_reason (bpf/include/netfence-events.h, part of netfence.h) → the text used in PacketEvent.reason, by code; re-exported by
 * wire-format.ts and checked against the header by test/unit/datapath/wire-format.test.ts.
 */
export const REASONS: readonly string[] = [
  "none",
  "mode:block-all",
  "not-in-allowlist",
  "deny-cidr",
  "allow-cidr",
  "mode:disabled",
  "denylist-default",
  "always-allowed",
  "protected",
  "malformed",
  "spoofed",
  "non-ip",
  "other-tenant-dns",
  "router-message",
  "protected-deny",
  "local-closed",
  "policy-depth",
  "kept-established",
];
