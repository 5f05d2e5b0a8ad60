import net from "node:net";
import { invalidArgument } from "@netfence/proto/errors";
import { CLOSED_GUARDS, type AttachGuards } from "../datapath/filter.js";
import { DNS_QUOTA_LIMITS, type DnsQuotas } from "../dns/dns-quotas.js";
import { parseQueryType } from "../dns/query-types.js";

/**
 * Per-attachment options carried as `netfence.*` metadata keys, so that an orchestrator written
 * for the Go original (which only sends metadata) can set them, and the CLI maps its flags onto
 * the same keys. The `netfence.` prefix is reserved: an unknown key under it is an error (a typo
 * must not silently leave a guard open or a quota unset). Everything is validated at the edge
 * (DaemonService Attach) and parsed again, from the stored metadata, when an attachment is
 * re-created or re-adopted.
 *
 *   netfence.direction          ingress (default) | egress                       interfaces only
 *   netfence.open               loopback,link-local: decided by the mode like any other destination
 *   netfence.services           dhcp,dhcpv6,mld,router: link services the workload may use
 *   netfence.non-ip             drop (default) | allow                           interfaces only
 *   netfence.workload-mac       aa:bb:cc:dd:ee:ff (source MAC and ARP sender)  interfaces only
 *   netfence.workload-ips       10.0.0.2,fd00::2 (ARP / neighbour advertisement anti-spoofing;
 *                               for interfaces also the only sources the DNS server answers)
 *   netfence.dns.qps | inflight | learned | answer-records | tcp-connections | tcp-per-source
 *                               quota overrides (integers)
 *   netfence.dns.refuse-types   TXT,NULL,ANY: query types this attachment's DNS server refuses
 *   netfence.events             allowed-flows: also report the first allowed packet of each flow
 *                               (once per flow per 60 s; blocked/audited packets are always reported)
 *   netfence.applied            true: the attachment belongs to the standalone policy file
 *                               (`netfenced apply -f`): an apply without it detaches it
 */

export const OPTION_PREFIX = "netfence.";
export const DIRECTION_KEY = "netfence.direction";
/** Marks the attachments of the standalone policy file (apply/apply-policy.ts). */
export const APPLIED_KEY = "netfence.applied";

export interface AttachOptions {
  readonly direction: "ingress" | "egress";
  readonly guards: AttachGuards;
  /** Overrides of the config's `dns.quotas.*`. */
  readonly quotas: Partial<DnsQuotas>;
  /** Query types refused; null = the config's `dns.refuse_types`. */
  readonly refuseTypes: readonly number[] | null;
}

const QUOTA_KEYS: Readonly<Record<string, keyof DnsQuotas>> = {
  "netfence.dns.qps": "qps",
  "netfence.dns.inflight": "inflight",
  "netfence.dns.learned": "learned",
  "netfence.dns.answer-records": "answerRecords",
  "netfence.dns.tcp-connections": "tcpConnections",
  "netfence.dns.tcp-per-source": "tcpPerSource",
};

export const OPTION_KEYS: readonly string[] = [
  DIRECTION_KEY,
  "netfence.open",
  "netfence.services",
  "netfence.non-ip",
  "netfence.workload-mac",
  "netfence.workload-ips",
  "netfence.dns.refuse-types",
  "netfence.events",
  APPLIED_KEY,
  ...Object.keys(QUOTA_KEYS),
];

const INTERFACE_ONLY = new Set([DIRECTION_KEY, "netfence.non-ip", "netfence.workload-mac"]);
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const MAX_WORKLOAD_ADDRESSES = 8; // per family; the kernel state holds this many (netfence.h)

function list(value: string): string[] {
  return value.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/**
 * Parses the `netfence.*` keys of `metadata` for an attachment of `kind`. Throws one
 * INVALID_ARGUMENT naming every problem; other metadata keys are the operator's and ignored.
 */
export function parseAttachOptions(metadata: Readonly<Record<string, string>>, kind: "interface" | "cgroup"): AttachOptions {
  const problems: string[] = [];
  let direction: "ingress" | "egress" = "ingress";
  const guards = { ...CLOSED_GUARDS, workloadAddresses: [] as string[] };
  const quotas: { -readonly [K in keyof DnsQuotas]?: number } = {};
  let refuseTypes: number[] | null = null;
  for (const [key, raw] of Object.entries(metadata)) {
    if (!key.startsWith(OPTION_PREFIX)) continue;
    const value = raw.trim();
    if (!OPTION_KEYS.includes(key)) {
      problems.push(`unknown option "${key.slice(0, 64)}" (the netfence. prefix is reserved; known: ${OPTION_KEYS.join(", ")})`);
      continue;
    }
    if (kind === "cgroup" && INTERFACE_ONLY.has(key)) {
      problems.push(`${key} applies to interface attachments only`);
      continue;
    }
    const quota = QUOTA_KEYS[key];
    if (quota !== undefined) {
      const n = /^\d{1,9}$/.test(value) ? Number(value) : NaN;
      const max = DNS_QUOTA_LIMITS[quota];
      if (!Number.isInteger(n) || n < 1 || n > max) problems.push(`${key} must be an integer in 1..${max} (got "${value.slice(0, 32)}")`);
      else quotas[quota] = n;
      continue;
    }
    switch (key) {
      case DIRECTION_KEY:
        if (value === "ingress" || value === "egress") direction = value;
        else problems.push(`${key} must be "ingress" or "egress" (got "${value.slice(0, 32)}")`);
        break;
      case "netfence.open":
        for (const item of list(value)) {
          if (item === "loopback") guards.openLoopback = true;
          else if (item === "link-local") guards.openLinkLocal = true;
          else problems.push(`${key}: "${item.slice(0, 32)}" is not one of loopback, link-local`);
        }
        break;
      case "netfence.services":
        for (const item of list(value)) {
          if (item === "dhcp") guards.dhcp = true;
          else if (item === "dhcpv6") guards.dhcpv6 = true;
          else if (item === "mld") guards.mld = true;
          else if (item === "router") guards.router = true;
          else problems.push(`${key}: "${item.slice(0, 32)}" is not one of dhcp, dhcpv6, mld, router`);
        }
        break;
      case "netfence.events":
        for (const item of list(value)) {
          if (item === "allowed-flows") guards.allowedFlows = true;
          else problems.push(`${key}: "${item.slice(0, 32)}" is not one of allowed-flows`);
        }
        break;
      case APPLIED_KEY:
        if (value !== "true") problems.push(`${key} must be "true" (got "${value.slice(0, 32)}")`);
        break;
      case "netfence.non-ip":
        if (value === "allow" || value === "drop") guards.allowNonIp = value === "allow";
        else problems.push(`${key} must be "drop" or "allow" (got "${value.slice(0, 32)}")`);
        break;
      case "netfence.workload-mac": {
        const mac = value.toLowerCase().replace(/-/g, ":");
        if (!MAC_RE.test(mac) || mac === "00:00:00:00:00:00" || (parseInt(mac.slice(0, 2), 16) & 1) === 1) {
          problems.push(`${key}: "${value.slice(0, 32)}" is not a unicast MAC address (aa:bb:cc:dd:ee:ff)`);
        } else guards.workloadMac = mac;
        break;
      }
      case "netfence.workload-ips": {
        const addrs = list(value);
        for (const a of addrs) {
          if (net.isIP(a) === 0) problems.push(`${key}: "${a.slice(0, 48)}" is not an IP address`);
        }
        const v4 = addrs.filter((a) => net.isIPv4(a)).length;
        const v6 = addrs.filter((a) => net.isIPv6(a)).length;
        if (v4 > MAX_WORKLOAD_ADDRESSES || v6 > MAX_WORKLOAD_ADDRESSES) {
          problems.push(`${key}: at most ${MAX_WORKLOAD_ADDRESSES} addresses per family`);
        }
        guards.workloadAddresses = addrs.filter((a) => net.isIP(a) !== 0);
        break;
      }
      case "netfence.dns.refuse-types": {
        refuseTypes = [];
        for (const item of list(value)) {
          const t = parseQueryType(item);
          if (t === null) problems.push(`${key}: "${item.slice(0, 32)}" is not a DNS query type`);
          else if (!refuseTypes.includes(t)) refuseTypes.push(t);
        }
        break;
      }
    }
  }
  if (problems.length > 0) throw invalidArgument(`invalid attach options: ${problems.join("; ")}`);
  return { direction, guards, quotas, refuseTypes };
}

/**
 * Options of an attachment re-created from the state store. Metadata stored by an older version
 * may carry keys that are no longer valid: the attachment then keeps the closed defaults (the
 * safe side) and the problem is returned for the log.
 */
export function storedAttachOptions(metadata: Readonly<Record<string, string>>, kind: "interface" | "cgroup"): { options: AttachOptions; problem: string | null } {
  try {
    return { options: parseAttachOptions(metadata, kind), problem: null };
  } catch (err) {
    const direction = metadata[DIRECTION_KEY] === "egress" ? "egress" : "ingress";
    return { options: { direction, guards: CLOSED_GUARDS, quotas: {}, refuseTypes: null }, problem: (err as Error).message };
  }
}
