/**
 * Several async iterables as one, in arrival order (the kernel's packet events and the DNS
 * servers' events on one daemon event stream). Ends when every source ended; stopping the merged
 * iteration (break, return) stops every source, so subscriptions are never leaked.
 */
export function mergeAsync<T>(...sources: AsyncIterable<T>[]): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const iterators = sources.map((s) => s[Symbol.asyncIterator]());
      const pending = new Map<number, Promise<{ i: number; r: IteratorResult<T> }>>();
      const arm = (i: number): void => {
        pending.set(i, iterators[i]!.next().then((r) => ({ i, r })));
      };
      iterators.forEach((_, i) => arm(i));
      const stopAll = async (): Promise<void> => {
        pending.clear();
        await Promise.all(iterators.map((it) => it.return?.().catch(() => undefined)));
      };
      return {
        async next(): Promise<IteratorResult<T>> {
          while (pending.size > 0) {
            const { i, r } = await Promise.race(pending.values());
            if (r.done) {
              pending.delete(i);
              continue;
            }
            arm(i);
            return { value: r.value, done: false };
          }
          return { value: undefined, done: true };
        },
        async return(): Promise<IteratorResult<T>> {
          await stopAll();
          return { value: undefined, done: true };
        },
      };
    },
  };
}
