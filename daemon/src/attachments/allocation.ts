import { NetfenceError } from "@netfence/proto/errors";

/** Lowest slot ≥ 1 not in use (slots are small integers carried in packet events). */
export function lowestFreeSlot(used: ReadonlySet<number>): number {
  let slot = 1;
  while (used.has(slot)) slot++;
  return slot;
}

/** Lowest DNS port of the configured range not in use; RESOURCE_EXHAUSTED when none is left. */
export function lowestFreePort(used: ReadonlySet<number>, portMin: number, portMax: number): number {
  for (let p = portMin; p <= portMax; p++) if (!used.has(p)) return p;
  throw new NetfenceError(
    "RESOURCE_EXHAUSTED",
    `no free DNS port in ${portMin}-${portMax} (${used.size} attachments); widen dns.port_min/dns.port_max`,
    { details: { portMin, portMax } },
  );
}

/** Every port of the range not in use, ascending (candidates for allocation by binding). */
export function freePorts(used: ReadonlySet<number>, portMin: number, portMax: number): number[] {
  const out: number[] = [];
  for (let p = portMin; p <= portMax; p++) if (!used.has(p)) out.push(p);
  return out;
}
