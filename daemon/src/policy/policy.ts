import type { Cidr, DomainRule, RuleScope } from "@netfence/proto/parse";
import type { DnsModeName } from "@netfence/proto/modes";
import type { FilterMode } from "./compiled.js";

export type { DnsModeName, DomainRule, FilterMode, RuleScope };

/** What happens to connections established before a policy change that would now block them (issue 15):
 * "sever" (the default, and the only behaviour before) cuts them at their next packet; "keep" lets TCP
 * connections that were allowed when they were set up go on (docs/operator-guide.md "Keep or sever"). */
export type EstablishedMode = "sever" | "keep";

/**
 * The typed policy model of one attachment, independent of protobuf and of the kernel.
 * Control-plane commands and the local default policy are parsed into these values at the edge;
 * the attachment manager compiles them (plus DNS-learned addresses) into kernel entries.
 */

export interface CidrRule {
  readonly cidr: Cidr;
  /** Wall-clock deadline (ms since epoch), null = permanent. */
  readonly expiresAtMs: number | null;
  /** Protocols, destination ports, users, groups the rule is limited to; absent = unscoped (issue 15).
   * Several rules may name the same CIDR with different scopes; (cidr, scope) identifies a rule. */
  readonly scope?: RuleScope;
}

export interface DnsPolicy {
  readonly mode: DnsModeName;
  readonly allowDomains: readonly DomainRule[];
  readonly denyDomains: readonly DomainRule[];
  /** "ip:port" upstreams overriding the daemon default; empty = use dns.upstream. */
  readonly upstreams: readonly string[];
}

export interface AttachmentPolicy {
  readonly mode: FilterMode;
  readonly audit: boolean;
  readonly allowCidrs: readonly CidrRule[];
  readonly denyCidrs: readonly CidrRule[];
  readonly dns: DnsPolicy;
  /** Absent = "sever". */
  readonly established?: EstablishedMode;
}

/** A validated policy change for one attachment (what a ControlCommand becomes after parsing). */
export type PolicyCommand =
  /** audit null: the attachment's audit setting stays (SetMode without the extension field). */
  | { readonly kind: "set-mode"; readonly mode: FilterMode; readonly audit: boolean | null }
  | { readonly kind: "allow-cidr"; readonly rule: CidrRule }
  | { readonly kind: "deny-cidr"; readonly rule: CidrRule }
  /** Removes every rule of the prefix, whatever its scope. */
  | { readonly kind: "remove-cidr"; readonly cidr: Cidr }
  | {
      readonly kind: "bulk-update";
      readonly mode: FilterMode;
      /** A BulkUpdate restates the whole policy: audit mode on or off (absent on the wire = off). */
      readonly audit: boolean;
      readonly allowCidrs: readonly CidrRule[];
      readonly denyCidrs: readonly CidrRule[];
      /** Absent: DNS rules are left as they are (BulkUpdate without `dns`). */
      readonly dns: DnsPolicy | null;
      /** Restated like audit: absent = "sever" (BulkUpdate.established UNSPECIFIED). */
      readonly established?: EstablishedMode;
    }
  | { readonly kind: "set-dns-mode"; readonly mode: DnsModeName }
  | { readonly kind: "allow-domain"; readonly rule: DomainRule }
  | { readonly kind: "deny-domain"; readonly rule: DomainRule }
  | { readonly kind: "remove-domain"; readonly domain: string };

export const EMPTY_DNS_POLICY: DnsPolicy = { mode: "disabled", allowDomains: [], denyDomains: [], upstreams: [] };
/** Filtering off: an attachment without a control plane and without a configured initial policy. */
export const DISABLED_POLICY: AttachmentPolicy = { mode: "disabled", audit: false, allowCidrs: [], denyCidrs: [], dns: EMPTY_DNS_POLICY };
