import { NOTHING_REFUSED, type AllowOutcome, type RefusedResolved, type ResolvedAddress, type ResolvedAllower } from "./resolved-allower.js";

/**
 * Puts one attachment's resolved addresses into the data path through the ResolvedAllower, cheaply:
 *
 * - Skips an address the same name already inserted recently when the entry still outlives the
 *   new answer (its TTL, at least MIN_REMAINING_MS) — a busy name costs no kernel write per query.
 * - Coalesces: addresses asked for during one turn of the event loop are flushed together in a
 *   setImmediate — one allowResolved call per (name, TTL), or ONE allowResolvedMany call when the
 *   allower offers it — and each caller's promise resolves when its batch has been applied.
 * - An address already on its way (flushed, not yet acknowledged) is awaited, not sent twice.
 *
 * - Reports, per caller, the addresses the allower refused (rebinding guard, quota): they are
 *   never remembered as recent, so the next answer carrying them is checked again.
 *
 * The "recent" memory is only an optimisation; `forgetRecent()` drops it (the server calls it
 * whenever the policy object changes, since the manager may then have removed addresses).
 */

/** Optional batch form of ResolvedAllower: one call, one acknowledgement for many names. */
export interface ResolvedBatchItem {
  readonly name: string;
  readonly addresses: readonly ResolvedAddress[];
  readonly ttlSeconds: number;
}

export interface ResolvedBatchAllower extends ResolvedAllower {
  allowResolvedMany(attachmentId: string, items: readonly ResolvedBatchItem[]): Promise<AllowOutcome | void>;
}

function hasBatch(allower: ResolvedAllower): allower is ResolvedBatchAllower {
  return typeof (allower as Partial<ResolvedBatchAllower>).allowResolvedMany === "function";
}

/** An entry must still have this long to live to be reused (covers the client's connect). */
export const MIN_REMAINING_MS = 30_000;
const MAX_RECENT = 65_536;

interface Group {
  readonly name: string;
  readonly ttlSeconds: number;
  readonly addresses: ResolvedAddress[];
  readonly keys: Set<string>;
  readonly promise: Promise<AllowOutcome>;
  resolve(outcome: AllowOutcome): void;
  reject(err: unknown): void;
}

export class ResolvedInserter {
  private readonly recent = new Map<string, number>(); // name|address → expiry (ms)
  private readonly inFlight = new Map<string, Promise<AllowOutcome>>();
  private pending = new Map<string, Group>();
  private flushScheduled = false;

  constructor(
    private readonly attachmentId: string,
    private readonly allower: ResolvedAllower,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Makes sure `addresses` of `name` are in the data path for `ttlSeconds` (already floored by
   * the caller) while a client may use an answer of `answerTtlSeconds`. Returns null when nothing
   * needs to be written, else a promise that settles once every address is acknowledged, with
   * the addresses of THIS call that were refused.
   */
  ensure(name: string, addresses: readonly ResolvedAddress[], ttlSeconds: number, answerTtlSeconds: number): Promise<AllowOutcome> | null {
    const now = this.now();
    const needMs = Math.max(answerTtlSeconds * 1000, Math.min(MIN_REMAINING_MS, ttlSeconds * 1000));
    let waits: Promise<AllowOutcome>[] | null = null;
    let group: Group | null = null;
    for (const addr of addresses) {
      const key = `${name}|${addr.address}`;
      const expiry = this.recent.get(key);
      if (expiry !== undefined && expiry - now >= needMs) continue;
      const flying = this.inFlight.get(key);
      if (flying !== undefined) {
        (waits ??= []).push(flying);
        continue;
      }
      if (group === null) {
        group = this.groupFor(name, ttlSeconds);
        (waits ??= []).push(group.promise);
      }
      if (!group.keys.has(key)) {
        group.keys.add(key);
        group.addresses.push(addr);
        this.inFlight.set(key, group.promise);
      }
    }
    if (waits === null) return null;
    const mine = new Set(addresses.map((a) => a.address));
    const pick = (outcomes: readonly AllowOutcome[]): AllowOutcome => {
      let refused: RefusedResolved[] | null = null;
      for (const o of outcomes) for (const r of o.refused) if (mine.has(r.address)) (refused ??= []).push({ ...r, name });
      return refused === null ? NOTHING_REFUSED : { refused };
    };
    return waits.length === 1 ? waits[0]!.then((o) => pick([o])) : Promise.all(waits).then(pick);
  }

  forgetRecent(): void {
    this.recent.clear();
  }

  private groupFor(name: string, ttlSeconds: number): Group {
    const id = `${name}\u0000${ttlSeconds}`;
    const existing = this.pending.get(id);
    if (existing) return existing;
    let resolve!: (outcome: AllowOutcome) => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<AllowOutcome>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A rejection is delivered to the callers awaiting it; never leave it unhandled here.
    promise.catch(() => undefined);
    const group: Group = { name, ttlSeconds, addresses: [], keys: new Set(), promise, resolve, reject };
    this.pending.set(id, group);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    return group;
  }

  private flush(): void {
    this.flushScheduled = false;
    const groups = [...this.pending.values()];
    this.pending = new Map();
    if (groups.length === 0) return;
    if (hasBatch(this.allower)) {
      const items = groups.map((g) => ({ name: g.name, addresses: g.addresses, ttlSeconds: g.ttlSeconds }));
      this.settle(groups, this.call(() => (this.allower as ResolvedBatchAllower).allowResolvedMany(this.attachmentId, items)));
    } else {
      for (const g of groups) {
        this.settle([g], this.call(() => this.allower.allowResolved(this.attachmentId, g.name, g.addresses, g.ttlSeconds)));
      }
    }
  }

  private call(fn: () => Promise<AllowOutcome | void>): Promise<AllowOutcome> {
    try {
      return Promise.resolve(fn()).then((o) => o ?? NOTHING_REFUSED);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private settle(groups: readonly Group[], done: Promise<AllowOutcome>): void {
    done.then(
      (outcome) => {
        const now = this.now();
        if (this.recent.size > MAX_RECENT) this.sweep(now);
        const refused = new Set(outcome.refused.map((r) => `${r.name}|${r.address}`));
        for (const g of groups) {
          for (const key of g.keys) {
            this.inFlight.delete(key);
            if (!refused.has(key)) this.recent.set(key, now + g.ttlSeconds * 1000);
          }
          g.resolve(groups.length === 1 ? outcome : { refused: outcome.refused.filter((r) => r.name === g.name) });
        }
      },
      (err: unknown) => {
        for (const g of groups) {
          for (const key of g.keys) this.inFlight.delete(key);
          g.reject(err);
        }
      },
    );
  }

  private sweep(now: number): void {
    for (const [key, expiry] of this.recent) if (expiry <= now) this.recent.delete(key);
    if (this.recent.size > MAX_RECENT) this.recent.clear();
  }
}
