import { DnsMode, PolicyMode } from "../gen/netfence/v1/types_pb.js";

/**
 * The contract's modes as plain names (what the daemon, its CLI and control-plane SDKs work
 * with) and their one mapping to and from the netfence.v1 enums.
 */
export type PolicyModeName = "disabled" | "allowlist" | "denylist" | "block-all";
export type DnsModeName = "disabled" | "allowlist" | "denylist" | "proxy";

export const POLICY_MODE_NAMES: readonly PolicyModeName[] = ["disabled", "allowlist", "denylist", "block-all"];
export const DNS_MODE_NAMES: readonly DnsModeName[] = ["disabled", "allowlist", "denylist", "proxy"];

export function policyModeToWire(mode: PolicyModeName): PolicyMode {
  switch (mode) {
    case "disabled": return PolicyMode.DISABLED;
    case "allowlist": return PolicyMode.ALLOWLIST;
    case "denylist": return PolicyMode.DENYLIST;
    case "block-all": return PolicyMode.BLOCK_ALL;
  }
}

export function dnsModeToWire(mode: DnsModeName): DnsMode {
  switch (mode) {
    case "disabled": return DnsMode.DISABLED;
    case "allowlist": return DnsMode.ALLOWLIST;
    case "denylist": return DnsMode.DENYLIST;
    case "proxy": return DnsMode.PROXY;
  }
}

/** The name of a wire policy mode; null for UNSPECIFIED and values this version does not know. */
export function policyModeFromWire(mode: PolicyMode): PolicyModeName | null {
  switch (mode) {
    case PolicyMode.DISABLED: return "disabled";
    case PolicyMode.ALLOWLIST: return "allowlist";
    case PolicyMode.DENYLIST: return "denylist";
    case PolicyMode.BLOCK_ALL: return "block-all";
    default: return null;
  }
}

/** The name of a wire DNS mode; null for UNSPECIFIED and values this version does not know. */
export function dnsModeFromWire(mode: DnsMode): DnsModeName | null {
  switch (mode) {
    case DnsMode.DISABLED: return "disabled";
    case DnsMode.ALLOWLIST: return "allowlist";
    case DnsMode.DENYLIST: return "denylist";
    case DnsMode.PROXY: return "proxy";
    default: return null;
  }
}
