import ipaddr from "ipaddr.js";
import { invalidArgument } from "../errors.js";

/** An IPv4 or IPv6 prefix in canonical form (host bits cleared). */
export interface Cidr {
  readonly family: 4 | 6;
  /** Network address, 4 or 16 bytes, network byte order, host bits zero. */
  readonly addr: Uint8Array;
  readonly prefixLen: number;
}

/** Canonical dotted-quad IPv4 with an optional prefix: by far the most common input. */
const V4_FAST = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})(?:\/(\d{1,3}))?$/;

/**
 * Parses "10.0.0.0/8", "2001:db8::/32" or a bare address (→ /32, /128). Throws INVALID_ARGUMENT.
 * Canonical dotted-quad IPv4 takes a fast path (~10x cheaper; a BulkUpdate carries 10k of them);
 * everything else, including every error, goes through parseCidrGeneral, and a test checks the
 * two agree on 20k inputs.
 */
export function parseCidr(text: string): Cidr {
  const m = V4_FAST.exec(text);
  if (m !== null) {
    const a = Number(m[1]);
    const b = Number(m[2]);
    const c = Number(m[3]);
    const d = Number(m[4]);
    const prefixLen = m[5] === undefined ? 32 : Number(m[5]);
    if (a <= 255 && b <= 255 && c <= 255 && d <= 255 && prefixLen <= 32) {
      const mask = prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
      const v = (((a << 24) | (b << 16) | (c << 8) | d) >>> 0) & mask;
      return { family: 4, addr: Uint8Array.of(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff), prefixLen };
    }
  }
  return parseCidrGeneral(text);
}

/** The general parser (any form ipaddr.js accepts, with our restrictions). */
export function parseCidrGeneral(text: string): Cidr {
  const raw = text.trim();
  if (raw === "" || raw.length > 64) throw invalidArgument(`invalid CIDR "${text}": empty or too long`);
  const slash = raw.indexOf("/");
  const addrText = slash === -1 ? raw : raw.slice(0, slash);
  // IPv4 only in the four-part dotted-decimal form: "1.2.3" or "0x0a.0.0.1" are not accepted.
  const looksV4 = !addrText.includes(":");
  if (looksV4 ? !ipaddr.IPv4.isValidFourPartDecimal(addrText) : !ipaddr.IPv6.isValid(addrText) || !/^[0-9a-fA-F.:]+$/.test(addrText)) {
    throw invalidArgument(`invalid CIDR "${text}": "${addrText}" is not an IP address`);
  }
  const parsed = ipaddr.parse(addrText);
  const family: 4 | 6 = parsed.kind() === "ipv4" ? 4 : 6;
  const maxLen = family === 4 ? 32 : 128;
  let prefixLen = maxLen;
  if (slash !== -1) {
    const lenText = raw.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText)) throw invalidArgument(`invalid CIDR "${text}": prefix length "${lenText}" is not a number`);
    prefixLen = Number(lenText);
    if (prefixLen > maxLen) throw invalidArgument(`invalid CIDR "${text}": prefix length ${prefixLen} exceeds ${maxLen}`);
  }
  const addr = Uint8Array.from(parsed.toByteArray());
  maskInPlace(addr, prefixLen);
  return { family, addr, prefixLen };
}

function maskInPlace(addr: Uint8Array, prefixLen: number): void {
  for (let i = 0; i < addr.length; i++) {
    const bitsHere = Math.max(0, Math.min(8, prefixLen - i * 8));
    addr[i] = addr[i]! & ((0xff << (8 - bitsHere)) & 0xff);
  }
}

/** Canonical text, e.g. "10.0.0.0/8", "2001:db8::/32". Used as the identity of a prefix. */
export function formatCidr(c: Cidr): string {
  return `${formatAddr(c.family, c.addr)}/${c.prefixLen}`;
}

/** Canonical address text: dotted quad, or RFC 5952 IPv6 (the same text ipaddr.js produces). */
export function formatAddr(family: 4 | 6, addr: Uint8Array): string {
  if (family === 4) return `${addr[0]}.${addr[1]}.${addr[2]}.${addr[3]}`;
  const groups = new Array<number>(8);
  for (let i = 0; i < 8; i++) groups[i] = (addr[2 * i]! << 8) | addr[2 * i + 1]!;
  // RFC 5952: compress the longest run (first if tied) of two or more zero groups.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) => groups.slice(from, to).map((g) => g.toString(16)).join(":");
  if (bestStart === -1) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLen, 8)}`;
}

/** True when `inner` lies inside `outer` (same family, longer-or-equal prefix, same leading bits). */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || inner.prefixLen < outer.prefixLen) return false;
  const masked = Uint8Array.from(inner.addr);
  maskInPlace(masked, outer.prefixLen);
  return masked.every((b, i) => b === outer.addr[i]);
}
