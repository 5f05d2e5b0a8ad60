import type { WireRecord } from "./dns-wire.js";
import { canonicalQueryName, type Cidr } from "@netfence/proto/parse";

/**
 * Which addresses of an upstream answer may open the data path — the CNAME semantics of SPEC §8
 * (as Cilium's toFQDNs): the rule that matches the QUERY name decides (the server checked it
 * before forwarding); starting at the queried name, the CNAME chain inside the answer section is
 * followed, and the A/AAAA records of the name the chain ends at are taken and opened with the
 * QUERY name as their provenance (what BulkUpdate pruning and `netfenced events` refer to).
 * So allowing `files.pythonhosted.org`, a CNAME into a CDN, opens the CDN's addresses.
 *
 * The one exception: an explicit DENY rule matching any name of the chain (`isDenied`) refuses
 * the whole answer — the server replies REFUSED (as Cilium rejects a denied DNS request) and
 * nothing is opened: an operator who denies `cdn.example` never sees it reached through an
 * allowed alias.
 *
 * Address records whose owner is not the end of the chain are ignored (not part of the answer to
 * this question). A chain longer than MAX_CHAIN or with a loop opens nothing (`broken`).
 */

export const MAX_CHAIN = 16;

export interface AnswerAddresses {
  /** The chain end's A/AAAA addresses (host prefixes, bytes from the wire), in answer order (at most `maxRecords`). */
  readonly addresses: Cidr[];
  /** A/AAAA records of the chain end beyond `maxRecords` (left out: the reply must lose them too). */
  readonly overQuota: number;
  /** Minimum TTL over the chain's CNAMEs and the address records taken (seconds). */
  readonly ttlSeconds: number;
  /** The names followed, queried name first. */
  readonly chain: string[];
  /** The first name of the chain an explicit deny rule matches (the answer is refused), or null. */
  readonly deniedName: string | null;
  /** The chain loops or is longer than MAX_CHAIN: nothing is opened. */
  readonly broken: boolean;
}

export function answerAddresses(
  answers: readonly WireRecord[],
  queriedName: string,
  isDenied: (name: string) => boolean,
  maxRecords = Number.POSITIVE_INFINITY,
): AnswerAddresses {
  const chain = [canonicalQueryName(queriedName)];
  let current = chain[0]!;
  let ttl = Number.POSITIVE_INFINITY;
  const none = (deniedName: string | null, broken: boolean): AnswerAddresses => ({ addresses: [], overQuota: 0, ttlSeconds: 0, chain, deniedName, broken });
  if (isDenied(current)) return none(current, false);
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
    if (chain.includes(next) || chain.length >= MAX_CHAIN) {
      chain.push(next);
      return none(null, true);
    }
    chain.push(next);
    if (isDenied(next)) return none(next, false);
    current = next;
  }
  const addresses: Cidr[] = [];
  let overQuota = 0;
  for (const record of answers) {
    if (record.type !== "CNAME" && canonicalQueryName(record.name) === current) {
      if (addresses.length >= maxRecords) {
        overQuota++;
        continue;
      }
      addresses.push(record.address);
      ttl = Math.min(ttl, record.ttl);
    }
  }
  return {
    addresses,
    overQuota,
    ttlSeconds: addresses.length === 0 || ttl === Number.POSITIVE_INFINITY ? 0 : ttl,
    chain,
    deniedName: null,
    broken: false,
  };
}
