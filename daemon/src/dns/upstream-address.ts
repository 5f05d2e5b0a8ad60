import { isIP } from "node:net";
import ipaddr from "ipaddr.js";
import { invalidArgument } from "@netfence/proto/errors";

/** An upstream resolver address: "ip", "ip:port", "[v6]" or "[v6]:port" (port 53 when absent). */
export interface UpstreamAddress {
  /** Canonical text form of the IP (as Node reports it in rinfo.address). */
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
  /** "host:port" or "[host]:port" — the pool key. */
  readonly key: string;
}

export function parseUpstreamAddress(text: string): UpstreamAddress {
  const trimmed = text.trim();
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(trimmed);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
  } else if (isIP(trimmed) === 6) {
    host = trimmed;
  } else {
    const colon = trimmed.lastIndexOf(":");
    host = colon === -1 ? trimmed : trimmed.slice(0, colon);
    portText = colon === -1 ? undefined : trimmed.slice(colon + 1);
  }
  const family = isIP(host);
  if (family !== 4 && family !== 6) throw invalidArgument("DNS upstream must be an IP address with an optional port", { upstream: text });
  const port = portText === undefined ? 53 : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535 || (portText !== undefined && !/^\d+$/.test(portText))) {
    throw invalidArgument("DNS upstream port must be 1..65535", { upstream: text });
  }
  const canonical = ipaddr.parse(host).toString();
  return { host: canonical, port, family, key: family === 6 ? `[${canonical}]:${port}` : `${canonical}:${port}` };
}
