import { watch, type FSWatcher } from "node:fs";

/**
 * inotify on one directory (fs.watch, not recursive): `onEvent(name)` for every entry created,
 * removed or renamed in it (name null when the kernel did not say which), `onLost()` once when
 * the watch ends by itself (the directory went away, the watch was dropped). Works on cgroup2
 * (rmdir of a child cgroup) and bpffs (removal of a pin directory): both go through the VFS,
 * which reports them. Returns null when the directory cannot be watched (missing, inotify limits
 * reached): the caller then falls back to checking what it cares about by polling.
 */
export interface DirWatch {
  close(): void;
}

export function watchDir(dir: string, onEvent: (name: string | null) => void, onLost: () => void): DirWatch | null {
  let w: FSWatcher;
  try {
    w = watch(dir, { persistent: false }, (_event, name) => onEvent(typeof name === "string" ? name : null));
  } catch {
    return null;
  }
  let closed = false;
  const lost = (): void => {
    if (closed) return;
    closed = true;
    w.close();
    onLost();
  };
  w.on("error", lost);
  w.on("close", lost);
  return {
    close(): void {
      closed = true;
      w.close();
    },
  };
}
