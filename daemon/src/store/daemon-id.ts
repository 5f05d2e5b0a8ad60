import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import os from "node:os";

/**
 * A daemon id stable across restarts (the control plane keys its state on it). With a data_dir
 * it is generated once and stored in the snapshot; without one it is derived from
 * /etc/machine-id (or the hostname), so a memory-only daemon still reports the same id.
 */
export function derivedDaemonId(): string {
  let seed: string;
  try {
    seed = readFileSync("/etc/machine-id", "utf8").trim();
  } catch {
    seed = "";
  }
  if (seed === "") seed = `host:${os.hostname()}`;
  return `nfd-${createHash("sha256").update(`netfence:${seed}`).digest("hex").slice(0, 16)}`;
}

export function randomDaemonId(): string {
  return `nfd-${randomBytes(8).toString("hex")}`;
}
