import { readdirSync, rmdirSync, rmSync } from "node:fs";
import path from "node:path";
import type { Logger } from "pino";
import type { Filter } from "../datapath/filter.js";

/**
 * `netfenced flush` (issue 15, seed 004 FR-6): everything Netfence installed on the host removed,
 * nothing of anyone else touched. In the running daemon (DaemonService Flush):
 *   1. every attachment detached — its program's link (or clsact filter) and its pins — and
 *      forgotten (the state store is emptied, so no start re-creates it); orphans' pins removed;
 *   2. the host-wide protected sets emptied and the DNS port guard (programs and pins) removed;
 *   3. the daemon stops: its loader child exits, which frees the host-wide maps, and then the
 *      host-wide pins (<pin_root>/_host/…) and the empty pin root are removed.
 * Only paths under the daemon's own pin_root are removed; programs are only detached by the
 * loader through the links and filters it made itself. With the daemon stopped, flush refuses
 * (cli/src/commands/flush.ts): what is pinned is only known for sure to the daemon.
 */

export interface FlushParts {
  readonly manager: { flush(): Promise<{ detached: string[]; orphans: string[] }> };
  readonly filter: Filter;
}

export async function flushAttachments(parts: FlushParts): Promise<{ detached: string[]; removed: string[] }> {
  const { detached, orphans } = await parts.manager.flush();
  await parts.filter.removePortGuard();
  await parts.filter.setProtected([]);
  return { detached, removed: [...orphans.map((o) => `orphan ${o}`), "host-wide pins (<pin_root>/_host), removed when the daemon has stopped"] };
}

/** After the loader exited: the host-wide pins and, when empty, the pin root itself. */
export function removeHostPins(pinRoot: string, logger: Logger): void {
  const host = path.join(pinRoot, "_host");
  try {
    rmSync(host, { recursive: true, force: true });
    if (readdirSync(pinRoot).length === 0) rmdirSync(pinRoot);
    logger.info({ pinRoot }, "flush: host-wide pins removed");
  } catch (err) {
    logger.warn({ err, pinRoot }, "flush: removing the host-wide pins failed");
  }
}
