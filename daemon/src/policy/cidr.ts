import ipaddr from "ipaddr.js";
import { invalidArgument } from "../errors.js";

/** An IPv4 or IPv6 prefix in canonical form (host bits cleared). */
export interface Cidr {
  readonly family: 4 | 6;
  /** Network address, 4 or 16 bytes, network byte order, host bits zero. */
  readonly addr: Uint8Array;
  readonly prefixLen: number;
}

/** Parses "10.0.0.0/8", "2001:db8::/32" or a bare address (→ /32, /128). Throws INVALID_ARGUMENT. */
export function parseCidr(text: string): Cidr {
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

export function formatAddr(family: 4 | 6, addr: Uint8Array): string {
  const bytes = Array.from(addr.subarray(0, family === 4 ? 4 : 16));
  return ipaddr.fromByteArray(bytes).toString();
}

/** True when `inner` lies inside `outer` (same family, longer-or-equal prefix, same leading bits). */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || inner.prefixLen < outer.prefixLen) return false;
  const masked = Uint8Array.from(inner.addr);
  maskInPlace(masked, outer.prefixLen);
  return masked.every((b, i) => b === outer.addr[i]);
}
