import type { KernelPacketEvent } from "../datapath/filter.js";
import type { OwnerNames } from "../policy/principals.js";

/**
 * Names the socket owner of packet events (issue 15, PacketEvent.user): the uid's user name from
 * the host's NSS (principals.ts OwnerNames, cached per uid, negative answers too). Events keep
 * their order: an event of a uid not seen before waits for one `getent` (bounded by its timeout);
 * every later event of that uid is named from the cache. Events without a uid pass unchanged.
 * A plain iterator, not an async generator: return() reaches the source at once even while a
 * next() waits (a generator would queue it behind that next(), and stopping would hang).
 */
export function withOwnerNames(source: AsyncIterable<KernelPacketEvent>, names: OwnerNames): AsyncIterable<KernelPacketEvent> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<KernelPacketEvent> {
      const it = source[Symbol.asyncIterator]();
      return {
        async next(): Promise<IteratorResult<KernelPacketEvent>> {
          const r = await it.next();
          if (r.done || r.value.uid == null) return r;
          const uid = r.value.uid;
          const cached = names.cached(uid);
          const user = cached !== undefined ? cached : await names.lookup(uid);
          return { value: { ...r.value, user }, done: false };
        },
        async return(): Promise<IteratorResult<KernelPacketEvent>> {
          await it.return?.();
          return { value: undefined, done: true };
        },
      };
    },
  };
}
