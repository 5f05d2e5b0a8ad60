import { readFileSync } from "node:fs";
import path from "node:path";
import { replayJournal } from "../../daemon/src/store/journal.js";
import type { StoreSnapshot } from "../../daemon/src/store/snapshot.js";

/**
 * What a daemon's data_dir holds (state.json + state.journal), read without touching it — safe
 * while the daemon runs (FileStateStore.load would clear its temp files). Null without a base.
 */
export function readStoredState(dataDir: string): StoreSnapshot | null {
  let base: (StoreSnapshot & { generation?: number }) | null;
  try {
    base = JSON.parse(readFileSync(path.join(dataDir, "state.json"), "utf8")) as StoreSnapshot & { generation?: number };
  } catch {
    return null;
  }
  let journal = "";
  try {
    journal = readFileSync(path.join(dataDir, "state.journal"), "utf8");
  } catch {
    journal = "";
  }
  return replayJournal(base, base.generation ?? 0, journal).snapshot;
}
