import type { FilterEntry } from "../../daemon/src/datapath/filter.js";

/** Encodes entries for prog-run (struct bench_file_entry in bench/datapath/bench.h): a u32 count, then 24-byte records. */
export function encodeEntriesFile(entries: readonly FilterEntry[]): Buffer {
  const b = Buffer.alloc(4 + entries.length * 24);
  b.writeUInt32LE(entries.length, 0);
  entries.forEach((e, i) => {
    const off = 4 + i * 24;
    b[off] = e.cidr.family;
    b[off + 1] = e.cidr.prefixLen;
    b[off + 2] = (e.allow ? 1 : 0) | (e.deny ? 2 : 0);
    b.writeUInt32LE(e.ruleId ?? 0, off + 4);
    b.set(e.cidr.addr.subarray(0, 16), off + 8);
  });
  return b;
}
