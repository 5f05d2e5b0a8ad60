/*
 * Crash-safe state store: one JSON snapshot in `data_dir`, written to a temp file, fsync'd,
 * renamed over the old one, then the directory fsync'd. Why not SQLite: the state is small
 * (≈1 KB per attachment, written on attach/detach/command), it is always read whole at start,
 * and write-and-rename gives all-or-nothing snapshots with no native dependency to build on every
 * host (Debian 12 / Ubuntu 22.04 / this kernel) — after `kill -9` at any moment the file is
 * either the previous snapshot or the next one, never a torn mix. The kernel side (pins) is the
 * other half of the truth; app start reconciles the two (see AttachmentManager.start).
 */
import { mkdir, open, readFile, readdir, rename, unlink } from "node:fs/promises";
import path from "node:path";
import { NetfenceError } from "../errors.js";
import type { StoreSnapshot } from "./snapshot.js";

export interface StateStore {
  /** The last saved snapshot, or null when there is none yet. */
  load(): Promise<StoreSnapshot | null>;
  /** Durably replaces the snapshot (resolves once it would survive a crash). */
  save(snapshot: StoreSnapshot): Promise<void>;
  readonly durable: boolean;
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

export class FileStateStore implements StateStore {
  readonly durable = true;
  private readonly file: string;
  private seq = 0;

  constructor(readonly dir: string) {
    this.file = path.join(dir, STATE_FILE);
  }

  async load(): Promise<StoreSnapshot | null> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    // Temp files of writes interrupted by a crash: never renamed, so never part of the state.
    for (const name of await readdir(this.dir)) {
      if (name.startsWith(`${STATE_FILE}.`) && name.endsWith(".tmp")) await unlink(path.join(this.dir, name)).catch(() => undefined);
    }
    let text: string;
    try {
      text = await readFile(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw new NetfenceError("INTERNAL", `cannot read state file ${this.file}`, { cause: err });
    }
    try {
      const parsed = JSON.parse(text) as StoreSnapshot;
      if (parsed.version !== 1 || !Array.isArray(parsed.attachments)) throw new Error(`unsupported state version ${String(parsed.version)}`);
      return parsed;
    } catch (err) {
      // rename is atomic, so this is not a torn write: the file was edited or written by something else.
      throw new NetfenceError("FAILED_PRECONDITION", `state file ${this.file} is corrupt: ${(err as Error).message}`, { cause: err });
    }
  }

  async save(snapshot: StoreSnapshot): Promise<void> {
    const tmp = `${this.file}.${process.pid}.${++this.seq}.tmp`;
    const fh = await open(tmp, "w", 0o600);
    try {
      await fh.writeFile(JSON.stringify(snapshot));
      await fh.sync();
    } catch (err) {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw new NetfenceError("INTERNAL", `cannot write state file ${tmp}`, { cause: err });
    }
    await fh.close();
    await rename(tmp, this.file);
    const dirHandle = await open(this.dir, "r");
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
  }
}
