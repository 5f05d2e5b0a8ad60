import net from "node:net";
import { invalidArgument } from "../errors.js";
import { formatAddr, parseCidr } from "./cidr.js";

/**
 * The one host:port parser of the contract: DNS upstreams in commands, policy files and the
 * daemon's config ("ip", "ip:port", "[v6]", "[v6]:port"), the control-plane address (a host name
 * allowed), listen addresses. Throws INVALID_ARGUMENT saying what is wrong.
 */
export interface HostPort {
  /** Canonical IP text (RFC 5952 for IPv6), or the host name as given. */
  readonly host: string;
  readonly port: number;
  /** null for a host name. */
  readonly family: 4 | 6 | null;
  /** "host:port", "[v6]:port": the canonical text. */
  readonly key: string;
}

export interface HostPortOptions {
  /** The port when the text has none; absent: a port is required. */
  readonly defaultPort?: number;
  /** A host name is accepted (e.g. a control plane's DNS name); default: IP addresses only. */
  readonly names?: boolean;
}

const BRACKETED = /^\[([^\]]*)\](?::(.*))?$/;
const HOST_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

export function parseHostPort(text: string, opts: HostPortOptions = {}): HostPort {
  const raw = text.trim();
  let host: string;
  let portText: string | undefined;
  const bracketed = BRACKETED.exec(raw);
  if (bracketed !== null) {
    host = bracketed[1]!;
    portText = bracketed[2];
    if (!net.isIPv6(host)) throw invalidArgument(`"${raw}": "${host}" is not an IPv6 address`);
  } else if (net.isIPv6(raw)) {
    host = raw; // a bare IPv6 address carries no port
  } else {
    const colon = raw.lastIndexOf(":");
    host = colon === -1 ? raw : raw.slice(0, colon);
    portText = colon === -1 ? undefined : raw.slice(colon + 1);
  }
  let port: number;
  if (portText === undefined) {
    if (opts.defaultPort === undefined) throw invalidArgument(`"${raw}" has no port (host:port)`);
    port = opts.defaultPort;
  } else {
    if (!/^\d{1,5}$/.test(portText)) throw invalidArgument(`"${raw}" has a bad port`);
    port = Number(portText);
    if (port < 1 || port > 65535) throw invalidArgument(`"${raw}": port ${port} out of range (1..65535)`);
  }
  if (net.isIP(host) === 0) {
    if (opts.names !== true || !HOST_NAME.test(host)) throw invalidArgument(`"${host}" is not an IP address${opts.names === true ? " or a host name" : ""}`);
    return { host, port, family: null, key: `${host}:${port}` };
  }
  const addr = parseCidr(host);
  const canonical = formatAddr(addr.family, addr.addr);
  return { host: canonical, port, family: addr.family, key: formatHostPort(canonical, port) };
}

/** "host:port", with an IPv6 host in brackets ("[::1]:53"): the text parseHostPort reads back. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
