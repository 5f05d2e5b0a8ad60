import { mkdir } from "node:fs/promises";
import path from "node:path";
import { findCgroup2Mount } from "../../daemon/src/attachments/target.js";
import { run } from "./run-command.js";

/**
 * The cgroup2 mount as the inner run of a namespaced benchmark sees it: `ip netns exec` remounted
 * /sys, so a cgroup2 mount below /sys may be gone; then the (single) cgroup2 hierarchy is mounted
 * again under `workdir`, in this mount namespace only (ip netns exec made it a slave of the host's:
 * nothing propagates back), and `release()` unmounts it.
 */
export async function cgroup2InNetns(workdir: string): Promise<{ root: string; release: () => Promise<void> }> {
  const found = findCgroup2Mount();
  if (found !== null) return { root: found, release: async () => undefined };
  const dir = path.join(workdir, "cgroup2");
  await mkdir(dir, { recursive: true });
  await run("mount", ["-t", "cgroup2", "none", dir]);
  return { root: dir, release: async () => void (await run("umount", [dir], true)) };
}
