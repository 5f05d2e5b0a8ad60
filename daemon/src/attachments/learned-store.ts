import { parseCidr, type Cidr } from "../policy/cidr.js";
import type { StoredAttachment, StoredLearned } from "../store/snapshot.js";
import { LearnedAddresses } from "./learned-addresses.js";

/**
 * The persisted form of one attachment's DNS-learned addresses: columnar and binary (base64)
 * instead of one JSON object per address, so a state file with 100k learned addresses stays
 * small and loads fast (bench/store measures it). Records are written IPv4 first, then IPv6;
 * record i has name `names[nameIndex[i]]`, address `v4[i]` (or `v6[i - v4 count]`) and deadline
 * `expiresAtMs[i]`.
 *
 *   nameIndex     uint32 little-endian per record
 *   v4 / v6       4 / 16 bytes per record, network byte order (as in a packet)
 *   expiresAtMs   float64 little-endian per record, ms since the epoch (exact: deadlines are integers < 2^53)
 *
 * The old form (`StoredAttachment.learned`, one {name, address, expiresAtMs} per address) is
 * still read; it is written empty, so a daemon of an older version reads such a file without
 * error (and without the learned addresses, which then simply expire in the kernel).
 */
export interface PackedLearned {
  readonly format: 1;
  readonly names: readonly string[];
  readonly nameIndex: string;
  readonly v4: string;
  readonly v6: string;
  readonly expiresAtMs: string;
}

export function packLearned(learned: LearnedAddresses): PackedLearned {
  const names: string[] = [];
  const nameIds = new Map<string, number>();
  const v4: { name: number; addr: Uint8Array; exp: number }[] = [];
  const v6: { name: number; addr: Uint8Array; exp: number }[] = [];
  for (const r of learned.all()) {
    let id = nameIds.get(r.name);
    if (id === undefined) {
      id = names.length;
      names.push(r.name);
      nameIds.set(r.name, id);
    }
    (r.cidr.family === 4 ? v4 : v6).push({ name: id, addr: r.cidr.addr, exp: r.expiresAtMs });
  }
  const n = v4.length + v6.length;
  const nameIndex = Buffer.allocUnsafe(4 * n);
  const exp = Buffer.allocUnsafe(8 * n);
  const a4 = Buffer.allocUnsafe(4 * v4.length);
  const a6 = Buffer.allocUnsafe(16 * v6.length);
  let i = 0;
  for (const r of v4) {
    nameIndex.writeUInt32LE(r.name, 4 * i);
    exp.writeDoubleLE(r.exp, 8 * i);
    a4.set(r.addr, 4 * i);
    i++;
  }
  let j = 0;
  for (const r of v6) {
    nameIndex.writeUInt32LE(r.name, 4 * i);
    exp.writeDoubleLE(r.exp, 8 * i);
    a6.set(r.addr, 16 * j);
    i++;
    j++;
  }
  return {
    format: 1,
    names,
    nameIndex: nameIndex.toString("base64"),
    v4: a4.toString("base64"),
    v6: a6.toString("base64"),
    expiresAtMs: exp.toString("base64"),
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
  const nameIndex = Buffer.from(p.nameIndex, "base64");
  const exp = Buffer.from(p.expiresAtMs, "base64");
  const a4 = Buffer.from(p.v4, "base64");
  const a6 = Buffer.from(p.v6, "base64");
  const n4 = a4.length / 4;
  const n = n4 + a6.length / 16;
  if (!Number.isInteger(n4) || !Number.isInteger(n) || nameIndex.length !== 4 * n || exp.length !== 8 * n) {
    throw new Error("learned addresses: column lengths do not match");
  }
  for (let i = 0; i < n; i++) {
    const name = p.names[nameIndex.readUInt32LE(4 * i)];
    if (name === undefined) throw new Error("learned addresses: name index out of range");
    const cidr: Cidr =
      i < n4
        ? { family: 4, addr: Uint8Array.from(a4.subarray(4 * i, 4 * i + 4)), prefixLen: 32 }
        : { family: 6, addr: Uint8Array.from(a6.subarray(16 * (i - n4), 16 * (i - n4) + 16)), prefixLen: 128 };
    learned.add(name, cidr, exp.readDoubleLE(8 * i));
  }
}
