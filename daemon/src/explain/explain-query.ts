import { invalidArgument } from "@netfence/proto/errors";
import { isAttachmentId, normalizeDomain, parseCidr } from "@netfence/proto/parse";
import { IPPROTO, type ExplainProbe } from "./verdict.js";

/** An explain question as the RPC carries it (validated by `parseExplainQuery`). */
export interface ExplainQuery {
  readonly attachmentId: string;
  /** An IPv4 or IPv6 address (no prefix); "" = not asked. */
  readonly address: string;
  /** 0 = not given. */
  readonly port: number;
  /** "tcp", "udp", "icmp", "icmpv6" or a number 0..255; "" = not given (tcp when a port is given). */
  readonly protocol: string;
  /** A domain name; "" = not asked. */
  readonly domain: string;
  /** The socket owner (issue 15): a user name or uid, a group name or gid; "" or absent = not given. */
  readonly user?: string;
  readonly group?: string;
}

export interface ParsedQuery {
  readonly attachmentId: string;
  readonly probe: ExplainProbe | null;
  readonly addressText: string;
  readonly domain: string | null;
  /** The owner as given (names or numbers; resolved by the explainer); null = not given. */
  readonly user: string | null;
  readonly group: string | null;
}

/** The IP protocol number of a name or number; throws INVALID_ARGUMENT. */
export function protocolNumber(text: string): number {
  const t = text.trim().toLowerCase();
  const named = (IPPROTO as Record<string, number>)[t === "ipv6-icmp" ? "icmpv6" : t];
  if (named !== undefined) return named;
  if (/^\d{1,3}$/.test(t) && Number(t) <= 255) return Number(t);
  throw invalidArgument(`unknown protocol "${text}": use tcp, udp, icmp, icmpv6 or a number 0-255`);
}

/** Validates a question; bad input → INVALID_ARGUMENT, nothing looked up. */
export function parseExplainQuery(q: ExplainQuery): ParsedQuery {
  if (!isAttachmentId(q.attachmentId)) throw invalidArgument(`invalid attachment id "${q.attachmentId}"`);
  const hasAddress = q.address.trim() !== "";
  const hasDomain = q.domain.trim() !== "";
  if (hasAddress === hasDomain) throw invalidArgument("explain needs exactly one of an address or a domain");
  const user = (q.user ?? "").trim() || null;
  const group = (q.group ?? "").trim() || null;
  if (hasDomain) {
    if (q.port !== 0 || q.protocol !== "") throw invalidArgument("a port or protocol goes with an address, not with --domain");
    if (user !== null || group !== null) throw invalidArgument("a user or group goes with an address, not with --domain");
    return { attachmentId: q.attachmentId, probe: null, addressText: "", domain: normalizeDomain(q.domain), user: null, group: null };
  }
  if (q.address.includes("/")) throw invalidArgument(`"${q.address}" is a prefix: explain takes one address`);
  const cidr = parseCidr(q.address.trim());
  if (!Number.isInteger(q.port) || q.port < 0 || q.port > 65535) throw invalidArgument(`port ${q.port} is out of range 1-65535`);
  const protocol = q.protocol !== "" ? protocolNumber(q.protocol) : q.port !== 0 ? IPPROTO.tcp : null;
  if (q.port !== 0 && protocol !== IPPROTO.tcp && protocol !== IPPROTO.udp && protocol !== IPPROTO.icmp && protocol !== IPPROTO.icmpv6 && protocol !== 132) {
    throw invalidArgument(`protocol ${q.protocol} has no ports`);
  }
  if (cidr.family === 4 && protocol === IPPROTO.icmpv6) throw invalidArgument("icmpv6 to an IPv4 address");
  return {
    attachmentId: q.attachmentId,
    probe: { family: cidr.family, addr: cidr.addr, protocol, port: q.port === 0 ? null : q.port },
    addressText: q.address.trim(),
    domain: null,
    user,
    group,
  };
}
