import { watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { parsePolicyFile } from "./parse-policy-file.js";
import type { PolicyFile } from "./policy-file.js";

export interface PolicyWatcherOptions {
  readonly path: string;
  readonly debounceMs?: number;
  readonly onLoad: (file: PolicyFile) => void;
  /** The file changed but is invalid (PolicyFileError) or unreadable; the caller keeps the last good policy. */
  readonly onError: (err: unknown) => void;
}

/** Loads a policy file once; throws PolicyFileError (positions) or the read error. */
export async function loadPolicyFile(path: string): Promise<PolicyFile> {
  return parsePolicyFile(await readFile(path, "utf8"), path);
}

/**
 * Watches the policy file's directory (editors and config managers replace files by rename, which
 * a watch on the file itself would miss) and reloads after changes settle for `debounceMs`.
 */
export class PolicyWatcher {
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastText: string | null = null;

  constructor(private readonly opts: PolicyWatcherOptions) {}

  start(): void {
    const full = resolve(this.opts.path);
    const name = basename(full);
    this.watcher = watch(dirname(full), (_event, filename) => {
      if (filename !== null && filename !== name) return;
      if (this.timer) clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.reload(), this.opts.debounceMs ?? 200);
    });
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.watcher?.close();
    this.watcher = null;
  }

  private async reload(): Promise<void> {
    this.timer = null;
    let text: string;
    try {
      text = await readFile(this.opts.path, "utf8");
    } catch (err) {
      // Mid-replace (file briefly absent): a later event will bring the new file.
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      this.opts.onError(err);
      return;
    }
    if (text === this.lastText) return;
    let file: PolicyFile;
    try {
      file = parsePolicyFile(text, this.opts.path);
    } catch (err) {
      this.lastText = text;
      this.opts.onError(err);
      return;
    }
    this.lastText = text;
    this.opts.onLoad(file);
  }
}
