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
import { NetfenceError } from "@netfence/proto/errors";
import type { StoreSnapshot } from "./snapshot.js";

export interface StateStore {
  /** The last saved snapshot, or null when there is none yet. */
  load(): Promise<StoreSnapshot | null>;
  /** Durably replaces the snapshot (resolves once it would survive a crash). */
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

export class FileStateStore implements StateStore {
  readonly durable = true;
  readonly warnings: string[] = [];
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
    // (they are kept enforcing as orphans): losing the state must never open the fence.
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
    const tmp = `${this.file}.${process.pid}.${++this.seq}.tmp`;
    try {
      const fh = await open(tmp, "w", 0o600);
      try {
        await fh.writeFile(JSON.stringify(snapshot));
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.file);
      const dirHandle = await open(this.dir, "r");
      try {
        await dirHandle.sync();
      } finally {
        await dirHandle.close();
      }
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      // The cause (ENOSPC, EROFS, EACCES …) goes into the message: it is what the operator must fix.
      const errno = (err as NodeJS.ErrnoException).code;
      const code = errno === "ENOSPC" || errno === "EDQUOT" ? "RESOURCE_EXHAUSTED" : "INTERNAL";
      throw new NetfenceError(code, `cannot write state file ${this.file}: ${(err as Error).message}`, { cause: err, details: { errno: errno ?? "" } });
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
