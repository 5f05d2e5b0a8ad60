import type { ExactTables, ExactTablesFamily } from "./datapath/filter.js";

/** Entries of one LPM trie (bpf/include/netfence.h NF_MAX_ENTRIES; allow and deny share it). */
export const LPM_TRIE_CAPACITY = 262_144;

/** TABLES requests in flight at once. */
const CHUNK = 32;

export const MAP_TABLES = ["exact-small", "exact-large", "lpm"] as const;
export type MapTable = (typeof MAP_TABLES)[number];

export interface MapUsageRow {
  readonly table: MapTable;
  readonly family: "ipv4" | "ipv6";
  /** Active-generation entries, summed over attachments. */
  readonly entries: number;
  /** Capacity, summed over attachments (a table an attachment has not installed counts 0). */
  readonly capacity: number;
  /** The fullest attachment's entries / its capacity (0 when none has the table). */
  readonly maxFill: number;
}

export interface MapUsageSnapshot {
  readonly rows: readonly MapUsageRow[];
  /** Attachments read (those that vanished meanwhile are left out). */
  readonly attachments: number;
  /** How long the last read took (ms). */
  readonly readMs: number;
  readonly atMs: number;
}

export interface MapUsageSource {
  ids(): readonly string[];
  tables(id: string): Promise<ExactTables>;
}

/**
 * Map entries against capacity for the metrics endpoint, per table and family, summed over the
 * attachments, with the fullest attachment's fill ratio (the one to act on). Read from the loader
 * (NF_OP_TABLES, one request per attachment, which walks that attachment's maps) at scrape time,
 * but at most once per `maxAgeMs` (default 5 s): scrapes in between get the cached figures, and
 * concurrent scrapes share one read.
 */
export class MapUsage {
  private cached: MapUsageSnapshot | null = null;
  private reading: Promise<MapUsageSnapshot> | null = null;

  constructor(
    private readonly source: MapUsageSource,
    private readonly maxAgeMs = 5000,
    private readonly now: () => number = Date.now,
  ) {}

  read(): Promise<MapUsageSnapshot> {
    const c = this.cached;
    if (c !== null && this.now() - c.atMs < this.maxAgeMs) return Promise.resolve(c);
    this.reading ??= this.readNow().finally(() => (this.reading = null));
    return this.reading;
  }

  private async readNow(): Promise<MapUsageSnapshot> {
    const t0 = performance.now();
    const acc = new Map<string, { table: MapTable; family: "ipv4" | "ipv6"; entries: number; capacity: number; maxFill: number }>();
    for (const table of MAP_TABLES) {
      for (const family of ["ipv4", "ipv6"] as const) acc.set(`${table}|${family}`, { table, family, entries: 0, capacity: 0, maxFill: 0 });
    }
    const add = (table: MapTable, family: "ipv4" | "ipv6", entries: number, capacity: number): void => {
      const row = acc.get(`${table}|${family}`)!;
      row.entries += entries;
      row.capacity += capacity;
      if (capacity > 0) row.maxFill = Math.max(row.maxFill, entries / capacity);
    };
    const fam = (family: "ipv4" | "ipv6", f: ExactTablesFamily): void => {
      add("exact-small", family, f.smallCount, f.smallCap);
      add("exact-large", family, f.largeCount, f.largeCap);
      add("lpm", family, f.lpmCount, LPM_TRIE_CAPACITY);
    };
    let attachments = 0;
    const ids = this.source.ids();
    // Pipelined in chunks: the loader answers in order, so round trips overlap without flooding it.
    for (let i = 0; i < ids.length; i += CHUNK) {
      const got = await Promise.all(ids.slice(i, i + CHUNK).map((id) => this.source.tables(id).catch(() => null))); // null: detached meanwhile
      for (const t of got) {
        if (t === null) continue;
        attachments++;
        fam("ipv4", t.v4);
        fam("ipv6", t.v6);
      }
    }
    const snap: MapUsageSnapshot = { rows: [...acc.values()], attachments, readMs: performance.now() - t0, atMs: this.now() };
    this.cached = snap;
    return snap;
  }
}
