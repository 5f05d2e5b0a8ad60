/**
 * Runs tasks one at a time per key, in submission order; different keys run independently.
 * Keeps the commands of one attachment in the order the control plane sent them, while a slow
 * attachment does not hold up the others. Tasks must not reject (they report their own errors).
 */
export class KeyedSerialQueue {
  private readonly tails = new Map<string, Promise<void>>();

  run(key: string, task: () => Promise<void>): void {
    const next = (this.tails.get(key) ?? Promise.resolve()).then(task);
    this.tails.set(key, next);
    void next.then(() => {
      if (this.tails.get(key) === next) this.tails.delete(key);
    });
  }

  /** Keys with queued or running tasks (tests, metrics). */
  get activeKeys(): number {
    return this.tails.size;
  }
}
