/** Small descriptive statistics for benchmark samples (no interpolation surprises: nearest rank). */

export function percentile(samples: readonly number[], p: number): number {
  if (!samples.length) throw new RangeError("percentile of an empty sample");
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function median(samples: readonly number[]): number {
  if (!samples.length) throw new RangeError("median of an empty sample");
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function mean(samples: readonly number[]): number {
  if (!samples.length) throw new RangeError("mean of an empty sample");
  return samples.reduce((a, b) => a + b, 0) / samples.length;
}

/** Rounds for reporting (keeps JSON readable, never changes which side of a target a figure is on by more than the rounding). */
export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
