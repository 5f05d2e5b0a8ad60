import net from "node:net";
import ipaddr from "ipaddr.js";
import { invalidArgument } from "@netfence/proto/errors";
import { CLOSED_GUARDS, type AttachGuards, type AttachSpec, type FilterEntry } from "./filter.js";
import type { LinkLayer } from "./link-type.js";
import { DIR_EGRESS, DIR_INGRESS, GUARD, KIND_CGROUP, KIND_TC, MAX_WORKLOAD_ADDRS, type LoadRequest } from "./wire-format.js";

/**
 * AttachSpec → the loader's LOAD request: the attachment's DNS server and port range, its guards
 * as NF_GUARD_* bits, the workload's MAC and addresses (anti-spoofing), and for interfaces the
 * link layer the TC program must parse. Everything is validated here, before the kernel is asked.
 */
export function loadRequestFor(spec: AttachSpec, linkLayer: LinkLayer | null, exactCap: number): LoadRequest {
  const dns = spec.dns;
  if (!Number.isInteger(dns.port) || dns.port < 0 || dns.port > 65535) throw invalidArgument(`invalid DNS port ${dns.port}`);
  const portMin = dns.portMin ?? 0;
  const portMax = dns.portMax ?? 0;
  if (!Number.isInteger(portMin) || !Number.isInteger(portMax) || portMin < 0 || portMax > 65535 || portMin > portMax) {
    throw invalidArgument(`invalid DNS port range ${portMin}-${portMax}`);
  }
  const g: AttachGuards = spec.guards ?? CLOSED_GUARDS;
  let guards =
    (g.openLoopback ? GUARD.OPEN_LOOPBACK : 0) |
    (g.openLinkLocal ? GUARD.OPEN_LINK_LOCAL : 0) |
    (g.dhcp ? GUARD.DHCP : 0) |
    (g.dhcpv6 ? GUARD.DHCPV6 : 0) |
    (g.mld ? GUARD.MLD : 0) |
    (g.router ? GUARD.ROUTER : 0) |
    (g.allowNonIp ? GUARD.ALLOW_NON_IP : 0) |
    (g.allowedFlows === true ? GUARD.ALLOWED_FLOWS : 0);
  if (linkLayer === "l3") guards |= GUARD.L3_DEVICE;
  let mac: Uint8Array | null = null;
  if (g.workloadMac !== null) {
    mac = parseMac(g.workloadMac);
    guards |= GUARD.MAC;
  }
  const ip4: Uint8Array[] = [];
  const ip6: Uint8Array[] = [];
  for (const a of g.workloadAddresses) {
    if (net.isIPv4(a)) ip4.push(Uint8Array.from(ipaddr.parse(a).toByteArray()));
    else if (net.isIPv6(a)) ip6.push(Uint8Array.from(ipaddr.parse(a).toByteArray()));
    else throw invalidArgument(`invalid workload address "${a}"`);
  }
  if (ip4.length > MAX_WORKLOAD_ADDRS || ip6.length > MAX_WORKLOAD_ADDRS) {
    throw invalidArgument(`at most ${MAX_WORKLOAD_ADDRS} workload addresses per family`);
  }
  const isInterface = spec.target.kind === "interface";
  return {
    id: spec.id,
    slot: spec.slot,
    kind: isInterface ? KIND_TC : KIND_CGROUP,
    direction: spec.target.kind === "interface" && spec.target.direction === "egress" ? DIR_EGRESS : DIR_INGRESS,
    dnsPort: dns.port,
    dnsIp4: parseDnsAddress(dns.ipv4, "ipv4"),
    dnsIp6: parseDnsAddress(dns.ipv6, "ipv6"),
    exactCap,
    guards,
    dnsPortMin: portMin,
    dnsPortMax: portMax,
    mac,
    ip4,
    ip6,
  };
}

function parseMac(text: string): Uint8Array {
  const m = /^([0-9a-fA-F]{2})([:-][0-9a-fA-F]{2}){5}$/.test(text) ? text.split(/[:-]/).map((h) => parseInt(h, 16)) : null;
  if (m === null || m.every((b) => b === 0) || (m[0]! & 1) === 1) throw invalidArgument(`invalid workload MAC "${text}" (a unicast aa:bb:cc:dd:ee:ff)`);
  return Uint8Array.from(m);
}

function parseDnsAddress(text: string | null, kind: "ipv4" | "ipv6"): Uint8Array | null {
  if (text === null || text === "") return null;
  if (!ipaddr.isValid(text)) throw invalidArgument(`invalid DNS server address "${text}"`);
  const parsed = ipaddr.parse(text);
  if (parsed.kind() !== kind) throw invalidArgument(`DNS server address "${text}" is not ${kind === "ipv4" ? "IPv4" : "IPv6"}`);
  return Uint8Array.from(parsed.toByteArray());
}

/**
 * Size of the small exact-match hashes, fixed at load (a hash allocates its buckets up front, 16
 * bytes each): room for both generations of the initial single hosts plus as many again for
 * DNS-learned addresses, at least 4096. A policy or a batch that does not fit moves its generation
 * to a large table of the right size (the loader's exact.c; docs/architecture.md).
 */
const EXACT_CAP_MIN = 4096;
const EXACT_CAP_MAX = 524288;
export function exactCapacityFor(entries: readonly FilterEntry[]): number {
  let v4 = 0;
  let v6 = 0;
  for (const e of entries) {
    if (e.cidr.family === 4 && e.cidr.prefixLen === 32) v4++;
    else if (e.cidr.family === 6 && e.cidr.prefixLen === 128) v6++;
  }
  let cap = EXACT_CAP_MIN;
  while (cap < 3 * Math.max(v4, v6) && cap < EXACT_CAP_MAX) cap *= 2;
  return cap;
}
