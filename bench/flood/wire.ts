/** Minimal DNS query encoding for the flood benchmark's load generators (no library on the hot path). */
export function encodeQuery(id: number, name: string, qtype: number, ednsSize = 0): Buffer {
  const parts: Buffer[] = [Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, ednsSize > 0 ? 1 : 0])];
  for (const label of name.split(".").filter((l) => l.length > 0)) parts.push(Buffer.from([label.length]), Buffer.from(label, "latin1"));
  parts.push(Buffer.from([0, qtype >> 8, qtype & 0xff, 0, 1]));
  if (ednsSize > 0) parts.push(Buffer.from([0, 0, 41, ednsSize >> 8, ednsSize & 0xff, 0, 0, 0, 0, 0, 0]));
  return Buffer.concat(parts);
}

export function rcodeOf(reply: Buffer): number {
  return reply.length >= 4 ? reply.readUInt16BE(2) & 0xf : -1;
}

/** Nearest-rank percentile of an ascending array (null when empty). */
export function pct(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
