/*
 * The state store's journal (data_dir/state.journal): what changed since the base snapshot
 * (state.json), one record per line, appended and fdatasync'd once per group commit.
 *
 *   line 1:  {"journal":1,"generation":G}            G = the base snapshot's generation
 *   then:    <crc32, 8 hex digits> <JSON>\n          one line per save: {"save":[<record>, …]}
 *                                                    record = {"put":<StoredAttachment>} | {"del":"<id>"}
 *
 * One save is one line, under one checksum: a crash in the middle of an append leaves a torn last
 * line (no newline, or a checksum that does not match), and it and anything after it are ignored,
 * which is exactly the state before that save (whose save() had not resolved). (Before session 21
 * each record had its own line: a SIGKILL can cut a write() of several pages short, and the whole
 * lines before the cut replayed half a save — some attachments new, the rest old. Such single-record
 * lines, from a journal written before, are still read.) A journal whose generation is not the
 * base's is left over from before a compaction that completed (the base already holds all of it)
 * and is ignored.
 */
import zlib from "node:zlib";
import type { StoreSnapshot, StoredAttachment } from "./snapshot.js";

export const JOURNAL_FILE = "state.journal";

export type JournalRecord = { readonly put: StoredAttachment } | { readonly del: string };

export function journalHeader(generation: number): string {
  return `${JSON.stringify({ journal: 1, generation })}\n`;
}

/** One save's line: the JSON texts of its records (given, so the caller can reuse them) under one checksum. */
export function journalSaveLine(recordJsons: readonly string[]): string {
  const json = `{"save":[${recordJsons.join(",")}]}`;
  return `${crcHex(json)} ${json}\n`;
}

export interface ReadJournal {
  /** The generation of the header, or null when the header is missing or unreadable. */
  readonly generation: number | null;
  readonly records: JournalRecord[];
  /** Bytes of the well-formed part (header and whole records). */
  readonly goodBytes: number;
  /** Bytes after that (a torn append); 0 when the journal ends cleanly. */
  readonly tornBytes: number;
}

export function readJournal(text: string): ReadJournal {
  const firstNl = text.indexOf("\n");
  if (firstNl === -1) return { generation: null, records: [], goodBytes: 0, tornBytes: Buffer.byteLength(text) };
  let generation: number | null = null;
  try {
    const h = JSON.parse(text.slice(0, firstNl)) as { journal?: unknown; generation?: unknown };
    if (h.journal === 1 && typeof h.generation === "number" && Number.isSafeInteger(h.generation)) generation = h.generation;
  } catch {
    generation = null;
  }
  if (generation === null) return { generation: null, records: [], goodBytes: 0, tornBytes: Buffer.byteLength(text) };
  const records: JournalRecord[] = [];
  let pos = firstNl + 1;
  while (pos < text.length) {
    const nl = text.indexOf("\n", pos);
    if (nl === -1) break;
    const line = parseLine(text.slice(pos, nl));
    if (line === null) break;
    records.push(...line);
    pos = nl + 1;
  }
  const goodBytes = Buffer.byteLength(text.slice(0, pos));
  return { generation, records, goodBytes, tornBytes: Buffer.byteLength(text) - goodBytes };
}

/** One line's records: a save's (all or none), or one record of an older journal; null when not whole. */
function parseLine(line: string): JournalRecord[] | null {
  if (line.length < 10 || line[8] !== " ") return null;
  const json = line.slice(9);
  if (crcHex(json) !== line.slice(0, 8)) return null;
  try {
    const r = JSON.parse(json) as Record<string, unknown>;
    if (!Array.isArray(r.save)) {
      const one = asRecord(r);
      return one === null ? null : [one];
    }
    const out: JournalRecord[] = [];
    for (const item of r.save as unknown[]) {
      const rec = typeof item === "object" && item !== null ? asRecord(item as Record<string, unknown>) : null;
      if (rec === null) return null; // not ours: the line (the save) is not applied at all
      out.push(rec);
    }
    return out;
  } catch {
    return null;
  }
}

function asRecord(r: Record<string, unknown>): JournalRecord | null {
  if (typeof r.del === "string") return { del: r.del };
  const put = r.put as Record<string, unknown> | undefined;
  if (typeof put === "object" && put !== null && typeof put.id === "string") return { put: put as unknown as StoredAttachment };
  return null;
}

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** CRC-32 (zlib's) of the UTF-8 bytes of `text`, as 8 hex digits; zlib.crc32 where Node has it (≥ 20.15). */
export function crcHex(text: string): string {
  const native = (zlib as { crc32?: (data: string | Uint8Array) => number }).crc32;
  let crc: number;
  if (native !== undefined) crc = native(text);
  else {
    const bytes = Buffer.from(text, "utf8");
    let c = -1;
    for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
    crc = (c ^ -1) >>> 0;
  }
  return crc.toString(16).padStart(8, "0");
}

/**
 * The state a base snapshot of `baseGeneration` and a journal's text describe together (pure: the
 * store's load and read-only inspection share it). A journal of another generation changes nothing.
 */
export function replayJournal(base: StoreSnapshot, baseGeneration: number, journalText: string): { snapshot: StoreSnapshot; tornBytes: number } {
  const journal = readJournal(journalText);
  if (journal.generation !== baseGeneration) return { snapshot: { version: 1, daemonId: base.daemonId, attachments: base.attachments }, tornBytes: 0 };
  const byId = new Map<string, StoredAttachment>(base.attachments.map((a) => [a.id, a]));
  for (const r of journal.records) {
    if ("del" in r) byId.delete(r.del);
    else byId.set(r.put.id, r.put);
  }
  return { snapshot: { version: 1, daemonId: base.daemonId, attachments: [...byId.values()] }, tornBytes: journal.tornBytes };
}
