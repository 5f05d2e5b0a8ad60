/*
 * The audit trail on disk (data_dir/history.journal), beside the state store and independent of
 * it: append-only, one entry per line, each line checksummed like the state journal's:
 *
 *   <crc32, 8 hex digits> <JSON HistoryEntry>\n
 *
 * Appends are batched and fdatasync'd once per batch. A crash in the middle of an append leaves a
 * torn tail (no newline): on open it is cut off, so the next append starts on a line of its own. A
 * line whose checksum does not match (a torn write the file system zero-filled, a hand edit) is
 * skipped, and the lines after it still count. Bounded: once the file holds half as many lines
 * again as the history keeps, it is rewritten with only the kept entries (temp file, fsync,
 * rename, directory fsync), so it never exceeds ~1.5 × history.max_entries lines and a rewrite
 * costs about one line per line appended.
 */
import { mkdir, open, readFile, rename, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { crcHex } from "../store/journal.js";
import { entryFromJson, type HistoryEntry } from "./history-entry.js";

export const HISTORY_FILE = "history.journal";

export interface ReadHistory {
  readonly entries: HistoryEntry[];
  /** Whole lines skipped (bad checksum or not an entry). */
  readonly badLines: number;
  /** Bytes of the well-formed part (every newline-terminated line). */
  readonly goodBytes: number;
  /** Bytes after the last newline (a torn append). */
  readonly tornBytes: number;
}

export function historyLine(e: HistoryEntry): string {
  const json = JSON.stringify(e);
  return `${crcHex(json)} ${json}\n`;
}

/** Parses the file's text (pure; the unit tests feed it torn and corrupt text). */
export function readHistory(text: string): ReadHistory {
  const entries: HistoryEntry[] = [];
  let badLines = 0;
  let pos = 0;
  while (pos < text.length) {
    const nl = text.indexOf("\n", pos);
    if (nl === -1) break;
    const line = text.slice(pos, nl);
    pos = nl + 1;
    const entry = parseLine(line);
    if (entry === null) badLines++;
    else entries.push(entry);
  }
  const goodBytes = Buffer.byteLength(text.slice(0, pos));
  return { entries, badLines, goodBytes, tornBytes: Buffer.byteLength(text) - goodBytes };
}

function parseLine(line: string): HistoryEntry | null {
  if (line.length < 10 || line[8] !== " ") return null;
  const json = line.slice(9);
  if (crcHex(json) !== line.slice(0, 8)) return null;
  try {
    return entryFromJson(JSON.parse(json));
  } catch {
    return null;
  }
}

export class HistoryFile {
  /** Lines in the file now (kept or not): the rewrite trigger. */
  lines: number;
  /** Bytes written by this process (tests, benchmarks). */
  bytesWritten = 0;
  rewrites = 0;

  private constructor(
    private readonly file: string,
    private fh: FileHandle,
    lines: number,
  ) {
    this.lines = lines;
  }

  /** Opens (creating) the file in `dir`; returns it with what it held. A torn tail is cut off. */
  static async open(dir: string): Promise<{ file: HistoryFile; read: ReadHistory }> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, HISTORY_FILE);
    let text = "";
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    const read = readHistory(text);
    const fh = await open(file, "a+", 0o600);
    if (read.tornBytes > 0) {
      await fh.truncate(read.goodBytes);
      await fh.datasync();
    }
    return { file: new HistoryFile(file, fh, read.entries.length + read.badLines), read };
  }

  /** Appends `entries` and fdatasyncs once. */
  async append(entries: readonly HistoryEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const text = entries.map(historyLine).join("");
    await this.fh.appendFile(text, "utf8");
    await this.fh.datasync();
    this.lines += entries.length;
    this.bytesWritten += Buffer.byteLength(text);
  }

  /** Replaces the file by one holding exactly `keep` (crash-safe: rename over the old one). */
  async rewrite(keep: readonly HistoryEntry[]): Promise<void> {
    const tmp = `${this.file}.tmp`;
    const text = keep.map(historyLine).join("");
    const out = await open(tmp, "w", 0o600);
    try {
      await out.writeFile(text, "utf8");
      await out.sync();
    } finally {
      await out.close();
    }
    await rename(tmp, this.file);
    const dir = await open(path.dirname(this.file), "r");
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    const old = this.fh;
    this.fh = await open(this.file, "a+", 0o600);
    await old.close().catch(() => undefined);
    this.lines = keep.length;
    this.bytesWritten += Buffer.byteLength(text);
    this.rewrites++;
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
  }
}
