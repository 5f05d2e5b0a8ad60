import dnsPacket from "dns-packet";
import type { Answer } from "dns-packet";
import { formatCidr, parseCidr } from "../policy/cidr.js";

/**
 * Takes address records out of an upstream reply, so the workload only sees what it may reach:
 * addresses the rebinding guard refused, and records beyond the attachment's per-answer quota.
 * A rare path (most answers pass through byte for byte), so it re-encodes with dns-packet: names
 * come out uncompressed, every other record and section is kept as it was.
 */

/** Canonical text of an address record's data, or null when it is not an address. */
function canonicalAddress(data: unknown): string | null {
  if (typeof data !== "string") return null;
  try {
    const c = parseCidr(data);
    return formatCidr(c).slice(0, formatCidr(c).lastIndexOf("/"));
  } catch {
    return null;
  }
}

/**
 * The reply with only the answer-section A/AAAA records whose address (canonical text) is in
 * `keep`; null when the reply cannot be decoded or re-encoded (the caller answers SERVFAIL).
 */
export function keepAddressRecords(reply: Buffer, keep: ReadonlySet<string>): Buffer | null {
  try {
    const packet = dnsPacket.decode(reply);
    const answers: Answer[] = [];
    for (const a of packet.answers ?? []) {
      if (a.type === "A" || a.type === "AAAA") {
        const address = canonicalAddress(a.data);
        if (address === null || !keep.has(address)) continue;
      }
      answers.push(a);
    }
    return dnsPacket.encode({ ...packet, answers });
  } catch {
    return null;
  }
}
