/*
 * Crash-safe state store in `data_dir`: a base snapshot (state.json, JSON) and a journal of what
 * changed since (state.journal, see journal.ts). A save appends the attachments whose stored form
 * changed (and the ids that went) to the journal and fdatasyncs it once: a BulkUpdate of one
 * attachment among 500 writes that attachment, not the whole state. When the journal would grow
 * past the size of the live state, the save compacts instead: the whole state goes to a new base
 * (temp file, fsync, rename, directory fsync) with the next generation, then an empty journal of
 * that generation replaces the old one the same way. So a save never writes more than the state,
 * and a run of saves at most about twice what changed plus the state.
 *
 * After `kill -9` at any moment the state read back is the one of some save that started, never
 * older than the last acknowledged one, never a torn mix: the base is always a whole file
 * (rename), a torn journal append is ignored (checksum per line), and a journal left from before
 * a completed compaction carries the old generation and is ignored (the new base holds it all).
 * Why not SQLite: the state is read whole at start, and this needs no native dependency to build
 * on every host. The kernel side (pins) is the other half of the truth; app start reconciles the
 * two (see AttachmentManager.start).
 */
import { mkdir, open, readFile, readdir, rename, unlink } from "node:fs/promises";
import path from "node:path";
import { NetfenceError } from "@netfence/proto/errors";
import type { StoreSnapshot, StoredAttachment } from "./snapshot.js";
import { JOURNAL_FILE, journalHeader, journalSaveLine, replayJournal } from "./journal.js";

export interface StateStore {
  /** The last saved snapshot, or null when there is none yet. */
  load(): Promise<StoreSnapshot | null>;
  /**
   * Durably replaces the snapshot (resolves once it would survive a crash). Attachments are
   * compared by object identity with the last save: pass the same object for an unchanged one.
   */
  save(snapshot: StoreSnapshot): Promise<void>;
  readonly durable: boolean;
  /** What load() had to repair (a corrupt state file moved aside), for the operator; empty when nothing. */
  readonly warnings?: readonly string[];
}

export class MemoryStateStore implements StateStore {
  readonly durable = false;
  private snapshot: StoreSnapshot | null = null;
  async load(): Promise<StoreSnapshot | null> {
    return this.snapshot === null ? null : structuredClone(this.snapshot);
  }
  async save(snapshot: StoreSnapshot): Promise<void> {
    this.snapshot = structuredClone(snapshot);
  }
}

export const STATE_FILE = "state.json";
export { JOURNAL_FILE } from "./journal.js";

/** Below this the journal is not compacted even when it exceeds the (small) state. */
const MIN_COMPACT_BYTES = 256 * 1024;

interface Written {
  readonly ref: StoredAttachment;
  readonly text: string;
}

export class FileStateStore implements StateStore {
  readonly durable = true;
  readonly warnings: string[] = [];
  /** Bytes written to data_dir by this store (bases and journal), for benchmarks and tests. */
  bytesWritten = 0;
  /** Base snapshots written (the first save after start is one). */
  compactions = 0;
  private readonly file: string;
  private readonly journalFile: string;
  private seq = 0;
  private generation = 0;
  private baseDaemonId: string | null = null;
  /** What the files hold now, by attachment id (in the order of the last snapshot). */
  private written = new Map<string, Written>();
  private liveBytes = 0;
  private journalBytes = 0;
  /** The next save writes a new base: nothing written yet in this process, or an append failed. */
  private compactNext = true;

  constructor(readonly dir: string) {
    this.file = path.join(dir, STATE_FILE);
    this.journalFile = path.join(dir, JOURNAL_FILE);
  }

  async load(): Promise<StoreSnapshot | null> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    // Temp files of writes interrupted by a crash: never renamed, so never part of the state.
    for (const name of await readdir(this.dir)) {
      const ours = name.startsWith(`${STATE_FILE}.`) || name.startsWith(`${JOURNAL_FILE}.`);
      if (ours && name.endsWith(".tmp")) await unlink(path.join(this.dir, name)).catch(() => undefined);
    }
    const base = await this.loadBase();
    if (base === null) return null;
    this.generation = typeof base.generation === "number" ? base.generation : 0;
    let journalText = "";
    try {
      journalText = await readFile(this.journalFile, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw new NetfenceError("INTERNAL", `cannot read ${this.journalFile}`, { cause: err });
    }
    // No journal yet, or one older than the base (which then holds it all): the base alone.
    const { snapshot, tornBytes } = replayJournal(base, this.generation, journalText);
    if (tornBytes > 0) {
      this.warnings.push(`state journal ${this.journalFile}: ignored the last ${tornBytes} bytes (a write interrupted by a crash; that save had not completed)`);
    }
    return snapshot;
  }

  private async loadBase(): Promise<(StoreSnapshot & { generation?: unknown }) | null> {
    let text: string;
    try {
      text = await readFile(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw new NetfenceError("INTERNAL", `cannot read state file ${this.file}`, { cause: err });
    }
    let problem: string;
    try {
      const parsed = JSON.parse(text) as unknown;
      problem = snapshotProblem(parsed);
      if (problem === "") return parsed as StoreSnapshot;
    } catch (err) {
      problem = (err as Error).message;
    }
    // rename is atomic, so this is not a torn write: the file was edited, truncated or written by
    // something else. It is kept for inspection and the daemon starts from the pins it finds
    // (they are kept enforcing as orphans): losing the state must never open the fence. The
    // journal is a list of changes to that base: meaningless without it (the next save replaces it).
    problem = problem.replace(/[\x00-\x1f]+/g, " ").slice(0, 200); // one log line, whatever the file held
    const aside = `${this.file}.corrupt-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    try {
      await rename(this.file, aside);
    } catch (err) {
      throw new NetfenceError("FAILED_PRECONDITION", `state file ${this.file} is corrupt (${problem}) and cannot be moved aside: ${(err as Error).message}`, { cause: err });
    }
    this.warnings.push(`state file ${this.file} was corrupt (${problem}); moved aside to ${aside}; pinned filters are kept enforcing as orphans`);
    return null;
  }

  async save(snapshot: StoreSnapshot): Promise<void> {
    let target = this.file;
    try {
      if (this.compactNext || snapshot.daemonId !== this.baseDaemonId) return await this.compact(snapshot, new Map());
      const fresh = new Map<StoredAttachment, string>();
      const seen = new Set<string>();
      const records: string[] = [];
      let live = this.liveBytes;
      for (const a of snapshot.attachments) {
        seen.add(a.id);
        const w = this.written.get(a.id);
        if (w?.ref === a) continue;
        const text = JSON.stringify(a);
        fresh.set(a, text);
        live += text.length - (w?.text.length ?? 0);
        records.push(`{"put":${text}}`);
      }
      for (const [id, w] of this.written) {
        if (seen.has(id)) continue;
        live -= w.text.length;
        records.push(JSON.stringify({ del: id }));
      }
      if (records.length === 0) return;
      const chunk = Buffer.from(journalSaveLine(records), "utf8"); // one line: the save replays whole or not at all
      const chunkBytes = chunk.length;
      if (this.journalBytes + chunkBytes > Math.max(live, MIN_COMPACT_BYTES)) return await this.compact(snapshot, fresh);
      target = this.journalFile;
      const fh = await open(this.journalFile, "a", 0o600);
      try {
        // Every byte or an error: a short write (a full disk) must not pass for a saved one.
        for (let off = 0; off < chunk.length; ) {
          const { bytesWritten } = await fh.write(chunk, off);
          if (bytesWritten <= 0) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
          off += bytesWritten;
        }
        await fh.datasync();
      } finally {
        await fh.close();
      }
      this.bytesWritten += chunkBytes;
      this.journalBytes += chunkBytes;
      this.remember(snapshot, fresh);
    } catch (err) {
      // A torn or failed append must not be followed by more appends: the next save starts afresh.
      this.compactNext = true;
      // The cause (ENOSPC, EROFS, EACCES …) goes into the message: it is what the operator must fix.
      const errno = (err as NodeJS.ErrnoException).code;
      const code = errno === "ENOSPC" || errno === "EDQUOT" ? "RESOURCE_EXHAUSTED" : "INTERNAL";
      throw new NetfenceError(code, `cannot write state file ${target}: ${(err as Error).message}`, { cause: err, details: { errno: errno ?? "" } });
    }
  }

  /** The whole state as the next generation's base, then an empty journal of that generation. */
  private async compact(snapshot: StoreSnapshot, fresh: Map<StoredAttachment, string>): Promise<void> {
    const generation = this.generation + 1;
    const texts = snapshot.attachments.map((a) => {
      const w = this.written.get(a.id);
      const text = (w?.ref === a ? w.text : fresh.get(a)) ?? JSON.stringify(a);
      fresh.set(a, text);
      return text;
    });
    const base = `{"version":1,"daemonId":${JSON.stringify(snapshot.daemonId)},"generation":${generation},"attachments":[${texts.join(",")}]}`;
    const header = journalHeader(generation);
    // The base first, durably (its rename and the directory), and only then the journal: a journal
    // of the new generation must never sit beside the old base.
    this.bytesWritten += await this.writeAtomic(this.file, base);
    this.bytesWritten += await this.writeAtomic(this.journalFile, header);
    this.generation = generation;
    this.baseDaemonId = snapshot.daemonId;
    this.journalBytes = Buffer.byteLength(header);
    this.written = new Map();
    this.liveBytes = 0;
    this.remember(snapshot, fresh);
    this.compactNext = false;
    this.compactions++;
  }

  private remember(snapshot: StoreSnapshot, fresh: Map<StoredAttachment, string>): void {
    const next = new Map<string, Written>();
    let live = 0;
    for (const a of snapshot.attachments) {
      const w = this.written.get(a.id);
      const text = w?.ref === a ? w.text : fresh.get(a)!;
      next.set(a.id, { ref: a, text });
      live += text.length;
    }
    this.written = next;
    this.liveBytes = live;
  }

  /** Temp file, fsync, rename over `file`, directory fsync. Returns the bytes written. */
  private async writeAtomic(file: string, text: string): Promise<number> {
    const tmp = `${file}.${process.pid}.${++this.seq}.tmp`;
    const bytes = Buffer.from(text, "utf8");
    try {
      const fh = await open(tmp, "w", 0o600);
      try {
        await fh.writeFile(bytes);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
      const dirHandle = await open(this.dir, "r");
      try {
        await dirHandle.sync();
      } finally {
        await dirHandle.close();
      }
      return bytes.length;
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
  }
}

/** "" when `v` looks like a snapshot this version can read, else what is wrong with it. */
function snapshotProblem(v: unknown): string {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "not a JSON object";
  const o = v as Record<string, unknown>;
  if (o.version !== 1) return `unsupported state version ${JSON.stringify(o.version) ?? "(none)"}`;
  if (typeof o.daemonId !== "string" || !Array.isArray(o.attachments)) return "daemonId or attachments missing";
  for (const [i, a] of (o.attachments as unknown[]).entries()) {
    const r = a as Record<string, unknown> | null;
    const ok =
      typeof r === "object" && r !== null && typeof r.id === "string" && typeof r.slot === "number" && typeof r.dnsPort === "number" &&
      typeof r.target === "object" && r.target !== null && typeof r.policy === "object" && r.policy !== null && Array.isArray(r.learned);
    if (!ok) return `attachment ${i} is malformed`;
  }
  return "";
}
