import path from "node:path";
import { sh } from "../../test/helpers/sandbox.js";

/**
 * Kernel memory of one attachment as bpftool reports it (bytes_memlock): every map its program
 * uses except the host-wide shared ones, plus the large exact tables' inner hashes (installed in
 * the v4_large / v6_large slots, not in the program's map list), plus the program itself.
 */

/** Names of the host-wide maps (as the loader creates them, or as the object declares them). */
const SHARED = new Set(["events", "throttle", "throttle_owner", "protected_v4", "protected_v6", "pdeny_v4", "pdeny_v6", "nf_events", "nf_throttle", "nf_protected_v4", "nf_protected_v6", "nf_pdeny_v4", "nf_pdeny_v6"]);

interface MapInfo {
  readonly id: number;
  readonly name?: string;
  readonly type: string;
  readonly max_entries: number;
  readonly bytes_memlock: number;
}

export interface AttachmentMemory {
  readonly total_bytes: number;
  readonly program_bytes: number;
  readonly maps: ReadonlyArray<{ name: string; type: string; max_entries: number; bytes: number }>;
}

async function json<T>(args: string[]): Promise<T> {
  return JSON.parse((await sh("bpftool", ["-j", ...args])).stdout) as T;
}

/** The inner map ids installed in an ARRAY_OF_MAPS pin (bpftool dump: one row per filled slot, the id as 4 hex bytes, little endian). */
async function innerIds(pin: string): Promise<number[]> {
  const rows = await json<Array<{ value: string[] }>>(["map", "dump", "pinned", pin]);
  return rows.map((r) => Buffer.from(r.value.map((h) => parseInt(h, 16))).readUInt32LE(0)).filter((v) => v > 0);
}

export async function attachmentMemory(pinRoot: string, id: string): Promise<AttachmentMemory> {
  const dir = path.join(pinRoot, id);
  const prog = await json<{ map_ids?: number[]; bytes_memlock?: number }>(["prog", "show", "pinned", path.join(dir, "prog")]);
  const ids = [...(prog.map_ids ?? [])];
  for (const outer of ["v4_large", "v6_large"]) ids.push(...(await innerIds(path.join(dir, outer))));
  const maps: Array<{ name: string; type: string; max_entries: number; bytes: number }> = [];
  for (const mid of ids) {
    const m = await json<MapInfo>(["map", "show", "id", String(mid)]);
    if (m.name !== undefined && SHARED.has(m.name)) continue;
    maps.push({ name: m.name ?? `id ${m.id}`, type: m.type, max_entries: m.max_entries, bytes: m.bytes_memlock });
  }
  const program_bytes = prog.bytes_memlock ?? 0;
  return { total_bytes: program_bytes + maps.reduce((s, m) => s + m.bytes, 0), program_bytes, maps };
}
