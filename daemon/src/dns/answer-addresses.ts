import type { WireRecord } from "./dns-wire.js";
import { canonicalQueryName } from "./domain-name.js";
import type { ResolvedAddress } from "./resolved-allower.js";

/**
 * Which addresses of an upstream answer may open the data path.
 *
 * The CNAME rule: starting at the queried name, the CNAME chain inside the answer section is
 * followed, and the A/AAAA records of the name the chain ends at are taken — but only if EVERY
 * name of the chain (the queried name and each CNAME target) passes `nameOk`. A chain that leaves
 * the allowed names adds nothing: e.g. in allowlist mode with `*.example.com` allowed, an answer
 * `www.example.com CNAME cdn.other.net; cdn.other.net A 1.2.3.4` is passed on to the client but
 * 1.2.3.4 is NOT added (the operator allows `*.other.net` too if that is wanted). This stops an
 * allowed zone from opening the addresses of a denied or unlisted name through a CNAME.
 * Address records whose owner is not the end of the chain are ignored (not part of the answer
 * to this question). Chains longer than MAX_CHAIN or with loops add nothing.
 */

export const MAX_CHAIN = 16;

export interface AnswerAddresses {
  readonly addresses: ResolvedAddress[];
  /** Minimum TTL over the chain's CNAMEs and the address records taken (seconds). */
  readonly ttlSeconds: number;
  /** The names followed, queried name first. */
  readonly chain: string[];
  /** Set when the chain reached a name that `nameOk` rejected (nothing is added then). */
  readonly rejectedName: string | null;
}

export function answerAddresses(answers: readonly WireRecord[], queriedName: string, nameOk: (name: string) => boolean): AnswerAddresses {
  const chain = [canonicalQueryName(queriedName)];
  let current = chain[0]!;
  let ttl = Number.POSITIVE_INFINITY;
  for (;;) {
    let next: string | null = null;
    for (const record of answers) {
      if (record.type === "CNAME" && canonicalQueryName(record.name) === current) {
        next = canonicalQueryName(record.data);
        ttl = Math.min(ttl, record.ttl);
        break;
      }
    }
    if (next === null) break;
    if (chain.includes(next) || chain.length >= MAX_CHAIN) return { addresses: [], ttlSeconds: 0, chain, rejectedName: next };
    chain.push(next);
    if (!nameOk(next)) return { addresses: [], ttlSeconds: 0, chain, rejectedName: next };
    current = next;
  }
  const addresses: ResolvedAddress[] = [];
  for (const record of answers) {
    if ((record.type === "A" || record.type === "AAAA") && canonicalQueryName(record.name) === current) {
      addresses.push({ family: record.type === "A" ? 4 : 6, address: record.data });
      ttl = Math.min(ttl, record.ttl);
    }
  }
  return { addresses, ttlSeconds: addresses.length === 0 || ttl === Number.POSITIVE_INFINITY ? 0 : ttl, chain, rejectedName: null };
}
