/**
 * The command-line shape the benchmarks share: `--flag value` options, numbers clamped into their
 * range (not refused), an unknown option or a missing value an error.
 */

/**
 * Walks `argv`: `take(flag, value)` handles one option, calling `value()` for its argument, and
 * returns false for an option it does not know.
 */
export function walkArgs(argv: readonly string[], take: (flag: string, value: () => string) => boolean): void {
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (!take(flag, value)) throw new Error(`unknown argument ${flag}`);
  }
}

/** A numeric option's value, clamped into [min, max]. */
export function clamped(text: string, min: number, max: number): number {
  return Math.min(max, Math.max(min, Number(text)));
}

/** The dnsperf schedule of the DNS benchmarks: rounds, seconds per throughput run, seconds per latency run. */
export interface DnsperfSchedule {
  rounds: number;
  seconds: number;
  latencySeconds: number;
}

/** Takes `--rounds` (1-9), `--seconds` (1-60) or `--latency-seconds` (1-30) into `s`; false for any other flag. */
export function takeDnsperfSchedule(s: DnsperfSchedule, flag: string, value: () => string): boolean {
  if (flag === "--rounds") s.rounds = clamped(value(), 1, 9);
  else if (flag === "--seconds") s.seconds = clamped(value(), 1, 60);
  else if (flag === "--latency-seconds") s.latencySeconds = clamped(value(), 1, 30);
  else return false;
  return true;
}
