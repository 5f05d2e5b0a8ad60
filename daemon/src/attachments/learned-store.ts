import { formatAddr, parseCidr, type Cidr } from "@netfence/proto/parse";
import type { PackedLearned, StoredAttachment, StoredLearned } from "../store/snapshot.js";
import { LearnedAddresses } from "../policy/learned-addresses.js";

/**
 * The persisted form of one attachment's DNS-learned addresses: columnar and binary (base64)
 * instead of one JSON object per address, so a state file with 100k learned addresses stays
 * small and loads fast (bench/store measures it). Records are written IPv4 first, then IPv6;
 * record i has name `names[nameIndex[i]]`, address `v4[i]` (or `v6[i - v4 count]`) and deadline
 * `baseMs + 1000 * expiresAfterBase[i]`.
 *
 *   nameIndex         uint16 little-endian per record (uint32 when there are more than 65536 names: `nameIndexBytes`)
 *   v4 / v6           4 / 16 bytes per record, network byte order (as in a packet)
 *   expiresAfterBase  uint32 little-endian seconds after `baseMs` (the earliest deadline), rounded
 *                     up: a stored deadline is at most 1 s later than the kernel's (whose own
 *                     deadline is exact and enforced while the daemon is down)
 *
 * The old form (`StoredAttachment.learned`, one {name, address, expiresAtMs} per address) is
 * still read; it is written empty, so a daemon of an older version reads such a file without
 * error (and without the learned addresses, which then simply expire in the kernel).
 * The type of the packed form is PackedLearned (store/snapshot.ts).
 */
const MAX_OFFSET_S = 0xffffffff;

export function packLearned(learned: LearnedAddresses): PackedLearned {
  const names: string[] = [];
  let n4 = 0;
  let n6 = 0;
  let baseMs = Infinity;
  learned.forEachByName((name, records) => {
    names.push(name);
    for (const r of records.values()) {
      if (r.cidr.family === 4) n4++;
      else n6++;
      if (r.expiresAtMs < baseMs) baseMs = r.expiresAtMs;
    }
  });
  if (baseMs === Infinity) baseMs = 0;
  const width: 2 | 4 = names.length <= 0x10000 ? 2 : 4;
  const n = n4 + n6;
  const nameIndex = Buffer.allocUnsafe(width * n);
  const exp = Buffer.allocUnsafe(4 * n);
  const a4 = Buffer.allocUnsafe(4 * n4);
  const a6 = Buffer.allocUnsafe(16 * n6);
  let i4 = 0;
  let i6 = n4;
  let id = 0;
  learned.forEachByName((_name, records) => {
    for (const r of records.values()) {
      const i = r.cidr.family === 4 ? i4++ : i6++;
      if (width === 2) nameIndex.writeUInt16LE(id, 2 * i);
      else nameIndex.writeUInt32LE(id, 4 * i);
      exp.writeUInt32LE(Math.min(MAX_OFFSET_S, Math.ceil((r.expiresAtMs - baseMs) / 1000)), 4 * i);
      if (r.cidr.family === 4) a4.set(r.cidr.addr, 4 * i);
      else a6.set(r.cidr.addr, 16 * (i - n4));
    }
    id++;
  });
  return {
    format: 1,
    names,
    nameIndexBytes: width,
    nameIndex: nameIndex.toString("base64"),
    v4: a4.toString("base64"),
    v6: a6.toString("base64"),
    baseMs,
    expiresAfterBase: exp.toString("base64"),
  };
}

/** The learned addresses of a stored attachment, from either form (both, if a file has both). */
export function learnedFromStored(stored: Pick<StoredAttachment, "learned" | "learnedPacked">): LearnedAddresses {
  const learned = new LearnedAddresses();
  for (const l of (stored.learned ?? []) as readonly StoredLearned[]) learned.add(l.name, parseCidr(l.address), l.expiresAtMs);
  if (stored.learnedPacked !== undefined) unpackInto(stored.learnedPacked, learned);
  return learned;
}

function unpackInto(p: PackedLearned, learned: LearnedAddresses): void {
  if (p.format !== 1) throw new Error(`unknown learned-address format ${String(p.format)}`);
  const width = p.nameIndexBytes;
  if (width !== 2 && width !== 4) throw new Error("learned addresses: bad name index width");
  const nameIndex = Buffer.from(p.nameIndex, "base64");
  const exp = Buffer.from(p.expiresAfterBase, "base64");
  const a4 = Buffer.from(p.v4, "base64");
  const a6 = Buffer.from(p.v6, "base64");
  const n4 = a4.length / 4;
  const n = n4 + a6.length / 16;
  if (!Number.isInteger(n4) || !Number.isInteger(n) || nameIndex.length !== width * n || exp.length !== 4 * n || !Number.isFinite(p.baseMs)) {
    throw new Error("learned addresses: column lengths do not match");
  }
  for (let i = 0; i < n; i++) {
    const name = p.names[width === 2 ? nameIndex.readUInt16LE(2 * i) : nameIndex.readUInt32LE(4 * i)];
    if (name === undefined) throw new Error("learned addresses: name index out of range");
    // Views into the decoded columns (read-only from here on: nothing writes a learned prefix).
    const cidr: Cidr =
      i < n4
        ? { family: 4, addr: a4.subarray(4 * i, 4 * i + 4), prefixLen: 32 }
        : { family: 6, addr: a6.subarray(16 * (i - n4), 16 * (i - n4) + 16), prefixLen: 128 };
    learned.add(name, cidr, p.baseMs + exp.readUInt32LE(4 * i) * 1000, `${formatAddr(cidr.family, cidr.addr)}/${cidr.prefixLen}`);
  }
}
