/**
 * The one dedupe rule of the DNS answer → kernel seam: an allowance the data path already holds
 * (expiring at `expiresAtMs`, null = never) covers a new DNS-learned one of `ttlSeconds` when it
 * still has at least half of that TTL to live. Then nothing is written: a busy name costs no
 * kernel write per query, and the entry is refreshed well before it runs out.
 *
 * Applied twice with the same meaning: by the DNS server's LearnedInserter on what it wrote
 * recently (saving even the queue turn), and by planLearned on what the kernel entry holds (which
 * may come from a CIDR rule or another name).
 */
export function allowanceCovers(expiresAtMs: number | null, ttlSeconds: number, nowMs: number): boolean {
  return expiresAtMs === null || expiresAtMs - nowMs >= (ttlSeconds * 1000) / 2;
}
