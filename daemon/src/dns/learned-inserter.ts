import { formatAddr, type Cidr } from "@netfence/proto/parse";
import { allowanceCovers } from "../policy/learned-dedupe.js";
import { NOTHING_REFUSED, type LearnedAddressSink, type LearnOutcome, type RefusedAddress } from "./learned-sink.js";

/**
 * One attachment's DNS server side of the DNS answer → kernel seam (learned-sink.ts):
 *
 * - THE TTL floor: addresses are held for max(answer TTL, minTtlSeconds);
 * - THE dedupe rule (policy/learned-dedupe.ts) on what this server wrote recently: an address the
 *   same name wrote and that still has half of the new TTL to live is not sent again — a busy name
 *   costs neither a kernel write nor a queue turn per query;
 * - an address already on its way (sent, not yet acknowledged) is awaited, not sent twice;
 * - per caller, the addresses the sink refused (rebinding guard, quota): never remembered as
 *   recent, so the next answer carrying them is checked again.
 *
 * Coalescing is the sink's (the manager's learned-address writer batches every attachment's
 * writes of one event-loop turn into one queued operation). The "recent" memory is only an
 * optimisation; it is dropped whenever the sink's epoch moves (a learned address was removed
 * before its deadline: deny rule, re-check) and by `forgetRecent()` (the server calls it whenever
 * the policy object changes). An entry never outlives the deadline the sink reported for it.
 */

const MAX_RECENT = 65_536;

export class LearnedInserter {
  private readonly recent = new Map<string, number>(); // name|address → expiry (ms)
  private readonly inFlight = new Map<string, Promise<LearnOutcome>>();
  private epoch: number | null = null;

  constructor(
    private readonly attachmentId: string,
    private readonly sink: LearnedAddressSink,
    private readonly minTtlSeconds: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Makes sure `addresses` (host prefixes from the answer) of `name` are in the data path for the
   * answer's TTL, floored. Returns null when nothing needs to be written, else a promise that
   * settles once every address is acknowledged, with the addresses of THIS call that were refused.
   */
  ensure(name: string, addresses: readonly Cidr[], answerTtlSeconds: number): Promise<LearnOutcome> | null {
    const ttlSeconds = Math.max(answerTtlSeconds, this.minTtlSeconds);
    const now = this.now();
    const epoch = this.sink.epoch(this.attachmentId);
    if (epoch !== this.epoch) {
      this.recent.clear();
      this.epoch = epoch;
    }
    let waits: Promise<LearnOutcome>[] | null = null;
    const send: Cidr[] = [];
    const sendKeys = new Set<string>();
    const mine = new Set<string>();
    for (const addr of addresses) {
      const text = formatAddr(addr.family, addr.addr);
      mine.add(text);
      const key = `${name}|${text}`;
      const expiry = this.recent.get(key);
      if (expiry !== undefined && allowanceCovers(expiry, ttlSeconds, now)) continue;
      const flying = this.inFlight.get(key);
      if (flying !== undefined) {
        (waits ??= []).push(flying);
        continue;
      }
      if (sendKeys.has(key)) continue;
      send.push(addr);
      sendKeys.add(key);
    }
    if (send.length > 0) {
      const written = this.write(name, send, sendKeys, ttlSeconds);
      (waits ??= []).push(written);
    }
    if (waits === null) return null;
    const pick = (outcomes: readonly LearnOutcome[]): LearnOutcome => {
      let refused: RefusedAddress[] | null = null;
      for (const o of outcomes) {
        for (const r of o.refused) if (mine.has(formatAddr(r.address.family, r.address.addr))) (refused ??= []).push({ ...r, name });
      }
      return refused === null ? NOTHING_REFUSED : { refused };
    };
    return waits.length === 1 ? waits[0]!.then((o) => pick([o])) : Promise.all(waits).then(pick);
  }

  /**
   * The earliest deadline (ms) this server's recent writes give the addresses of `name` (those
   * in `skip`, as address text, left out), Infinity when none is left; 0 when one of them is not
   * known to be held (never written, refused, or forgotten since): what the answer cache may rely on.
   */
  heldUntil(name: string, addresses: readonly Cidr[], skip?: ReadonlySet<string>): number {
    let min = Infinity;
    for (const addr of addresses) {
      const text = formatAddr(addr.family, addr.addr);
      if (skip?.has(text) === true) continue;
      const expiry = this.recent.get(`${name}|${text}`);
      if (expiry === undefined) return 0;
      if (expiry < min) min = expiry;
    }
    return min;
  }

  forgetRecent(): void {
    this.recent.clear();
  }

  private write(name: string, addresses: readonly Cidr[], keys: ReadonlySet<string>, ttlSeconds: number): Promise<LearnOutcome> {
    let done: Promise<LearnOutcome>;
    try {
      done = this.sink.write(this.attachmentId, [{ name, addresses, ttlSeconds }]);
    } catch (err) {
      done = Promise.reject(err);
    }
    const settled = done.then(
      (outcome) => {
        const now = this.now();
        if (this.recent.size > MAX_RECENT) this.sweep(now);
        const refused = new Set(outcome.refused.map((r) => `${r.name}|${formatAddr(r.address.family, r.address.addr)}`));
        // Never beyond what the kernel holds (an entry another name wrote keeps its own deadline).
        const expiry = Math.min(now + ttlSeconds * 1000, outcome.heldUntilMs ?? Infinity);
        for (const key of keys) {
          this.inFlight.delete(key);
          if (!refused.has(key)) this.recent.set(key, expiry);
        }
        return outcome;
      },
      (err: unknown) => {
        for (const key of keys) this.inFlight.delete(key);
        throw err;
      },
    );
    // A rejection is delivered to the callers awaiting it; never leave it unhandled here.
    settled.catch(() => undefined);
    for (const key of keys) this.inFlight.set(key, settled);
    return settled;
  }

  private sweep(now: number): void {
    for (const [key, expiry] of this.recent) if (expiry <= now) this.recent.delete(key);
    if (this.recent.size > MAX_RECENT) this.recent.clear();
  }
}
