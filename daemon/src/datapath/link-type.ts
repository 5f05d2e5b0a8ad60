import { readFileSync } from "node:fs";
import path from "node:path";
import { invalidArgument } from "@netfence/proto/errors";

/**
 * Which interfaces the TC program can parse, by link type (/sys/class/net/<if>/type, an ARPHRD_*
 * number). Ethernet-type devices (veth, tap, physical NICs, macvlan, bridges, VLAN devices…) carry
 * an Ethernet header; tun and wireguard devices (ARPHRD_NONE) and raw-IP devices (ARPHRD_RAWIP)
 * hand the program the IP header directly. Anything else (loopback, ipip, gre, sit, ppp, …) is
 * refused: the program could not tell what it is looking at, and a filter that cannot parse a
 * packet must not be attached as if it could.
 */

export type LinkLayer = "ethernet" | "l3";

export const ARPHRD_ETHER = 1;
export const ARPHRD_RAWIP = 519;
export const ARPHRD_NONE = 65534;

const KNOWN: Readonly<Record<number, string>> = {
  32: "infiniband",
  256: "slip",
  280: "can",
  512: "ppp",
  768: "ipip",
  769: "ip6tnl",
  772: "loopback",
  776: "sit",
  778: "gre",
  783: "irda",
  823: "ip6gre",
  65535: "void",
};

export const SUPPORTED_LINK_TYPES =
  "Ethernet-type devices (ARPHRD_ETHER = 1: veth, tap, physical NICs, macvlan, bridges, VLAN devices) and L3 devices " +
  "without a link-layer header (ARPHRD_NONE = 65534: tun, wireguard; ARPHRD_RAWIP = 519)";

/** The interface's ARPHRD_* link type, or null if it cannot be read (no such interface). */
export function readLinkType(name: string, netDir = "/sys/class/net"): number | null {
  try {
    const n = Number(readFileSync(path.join(netDir, name, "type"), "utf8").trim());
    return Number.isInteger(n) && n >= 0 ? n : null;
  } catch {
    return null;
  }
}

/** How the TC program must parse an interface of this link type; INVALID_ARGUMENT if it cannot. */
export function linkLayerOf(name: string, type: number): LinkLayer {
  if (type === ARPHRD_ETHER) return "ethernet";
  if (type === ARPHRD_NONE || type === ARPHRD_RAWIP) return "l3";
  const known = KNOWN[type];
  throw invalidArgument(
    `interface "${name}" has link type ${type}${known ? ` (${known})` : ""}, which Netfence cannot filter; supported: ${SUPPORTED_LINK_TYPES}`,
    { interface: name, linkType: type },
  );
}
