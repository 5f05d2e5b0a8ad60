/**
 * Runs `jobs` in order with at most `limit` in flight; resolves with their results in order.
 *
 * netfence-cp pushes one BulkUpdate per attachment and waits for each CommandResult with a
 * timeout. A daemon applies them one at a time, so with all of a reload's commands in flight at
 * once the last one's timeout also covered the time to apply every one before it (500 × 1,000
 * CIDRs: "not confirmed" for commands the daemon did apply). With a window per daemon, a
 * command's timeout starts when it is sent and covers only the few ahead of it, and the daemon
 * still always has the next ones queued.
 */
export async function runWindowed<T>(jobs: ReadonlyArray<() => Promise<T>>, limit: number): Promise<T[]> {
  const results = new Array<T>(jobs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, jobs.length)) }, worker));
  return results;
}
