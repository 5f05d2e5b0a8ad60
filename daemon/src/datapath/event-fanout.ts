/**
 * Delivers each published item to every current subscriber as an async iterator. A slow
 * subscriber's backlog is bounded (oldest items dropped and counted) so packet events can
 * never grow the daemon's memory without limit.
 */
export class EventFanout<T> {
  private readonly subscribers = new Set<Subscriber<T>>();
  private closed = false;

  constructor(private readonly maxBacklog = 10_000) {}

  publish(item: T): void {
    for (const s of this.subscribers) s.push(item, this.maxBacklog);
  }

  subscribe(): AsyncIterable<T> {
    const sub = new Subscriber<T>(() => this.subscribers.delete(sub));
    if (this.closed) sub.end();
    else this.subscribers.add(sub);
    return sub;
  }

  close(): void {
    this.closed = true;
    for (const s of this.subscribers) s.end();
    this.subscribers.clear();
  }
}

class Subscriber<T> implements AsyncIterable<T> {
  private readonly queue: T[] = [];
  private waiter: ((r: IteratorResult<T>) => void) | null = null;
  private ended = false;
  dropped = 0;

  constructor(private readonly onDone: () => void) {}

  push(item: T, max: number): void {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w({ value: item, done: false });
      return;
    }
    if (this.queue.length >= max) {
      this.queue.shift();
      this.dropped++;
    }
    this.queue.push(item);
  }

  end(): void {
    this.ended = true;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        const item = this.queue.shift();
        if (item !== undefined) return Promise.resolve({ value: item, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise<IteratorResult<T>>((resolve) => (this.waiter = resolve));
      },
      return: () => {
        this.end();
        this.onDone();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
