import { parseCidr, type Cidr } from "../policy/cidr.js";

/**
 * parseCidr with a fast path for the overwhelmingly common input of control planes, canonical
 * dotted-quad IPv4 with an optional prefix ("10.1.2.0/24"): ~10x cheaper than the general parser,
 * which matters for a BulkUpdate of 10k prefixes. Everything else — IPv6, errors, unusual forms —
 * goes to parseCidr, so accepted values and error messages are exactly parseCidr's.
 * (Candidate for folding into policy/cidr.ts.)
 */
const V4 = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})(?:\/(\d{1,3}))?$/;

export function parseCidrFast(text: string): Cidr {
  const m = V4.exec(text);
  if (m !== null) {
    const a = Number(m[1]);
    const b = Number(m[2]);
    const c = Number(m[3]);
    const d = Number(m[4]);
    const prefixLen = m[5] === undefined ? 32 : Number(m[5]);
    if (a <= 255 && b <= 255 && c <= 255 && d <= 255 && prefixLen <= 32) {
      // Host bits cleared, as parseCidr does.
      const mask = prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
      const v = (((a << 24) | (b << 16) | (c << 8) | d) >>> 0) & mask;
      return { family: 4, addr: Uint8Array.of(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff), prefixLen };
    }
  }
  return parseCidr(text);
}
