/**
 * DNS query types by mnemonic, for the per-attachment query-type policy (`dns.refuse_types`,
 * `netfence.dns.refuse-types`): e.g. refuse TXT, NULL and ANY for a tenant whose allowed wildcard
 * would otherwise carry hex-encoded data to the upstream. RFC 3597 "TYPEnnn" names any other type.
 */
const QUERY_TYPES: Readonly<Record<string, number>> = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, NULL: 10, WKS: 11, PTR: 12, HINFO: 13, MX: 15, TXT: 16, RP: 17, AAAA: 28,
  LOC: 29, SRV: 33, NAPTR: 35, CERT: 37, DNAME: 39, OPT: 41, DS: 43, SSHFP: 44, RRSIG: 46, NSEC: 47,
  DNSKEY: 48, TLSA: 52, SVCB: 64, HTTPS: 65, SPF: 99, IXFR: 251, AXFR: 252, ANY: 255, URI: 256, CAA: 257,
};

/** The numeric type of a mnemonic ("TXT", "any", "TYPE65"), or null when it names no type. */
export function parseQueryType(text: string): number | null {
  const upper = text.trim().toUpperCase();
  const known = QUERY_TYPES[upper];
  if (known !== undefined) return known;
  const m = /^TYPE(\d{1,5})$/.exec(upper);
  if (m === null) return null;
  const n = Number(m[1]);
  return n >= 1 && n <= 65535 ? n : null;
}
