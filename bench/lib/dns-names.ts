import { writeFile } from "node:fs/promises";
import path from "node:path";

/**
 * The names of the DNS benchmarks: one hosts file for the authoritative dnsmasq upstream
 * (`--addn-hosts`) and dnsperf query files. `probe.bench.test` (what Dnsmasq.start waits for), 1000
 * "warm" names w0…w999.bench.test (10.77.x.y) queried over and over, and "cold" files of fresh
 * names c<n>.bench.test, each with its own address (10.64.0.0 upwards), so every answer of a cold
 * pass is a new address to add. Files go into `dir`.
 */
export class DnsNameFiles {
  private readonly hostLines: string[] = ["10.77.0.1 probe.bench.test"];
  private readonly warmLines: string[] = [];
  private next = 0;

  /** `extraHosts`: more hosts-file lines ("address name"), after the probe and before the warm names. */
  constructor(readonly dir: string, extraHosts: readonly string[] = []) {
    this.hostLines.push(...extraHosts);
    for (let i = 0; i < 1000; i++) {
      this.hostLines.push(`10.77.${i >> 8}.${i & 255} w${i}.bench.test`);
      this.warmLines.push(`w${i}.bench.test A`);
    }
  }

  /** A query file of `count` fresh names (never used before in this set). */
  async coldFile(file: string, count: number): Promise<string> {
    const lines: string[] = [];
    for (let i = 0; i < count; i++, this.next++) {
      const n = this.next;
      this.hostLines.push(`10.${64 + (n >> 16)}.${(n >> 8) & 255}.${n & 255} c${n}.bench.test`);
      lines.push(`c${n}.bench.test A`);
    }
    return this.write(file, lines);
  }

  /** One cold file per round for `label`: cold-<label>-<round>.txt. */
  async coldRounds(label: string, rounds: number, count: number): Promise<string[]> {
    const out: string[] = [];
    for (let r = 0; r < rounds; r++) out.push(await this.coldFile(`cold-${label}-${r}.txt`, count));
    return out;
  }

  /** Writes the hosts file (every name so far) and warm.txt; call after the last coldFile. */
  async finish(): Promise<{ hosts: string; warm: string }> {
    return { hosts: await this.write("hosts", this.hostLines), warm: await this.write("warm.txt", this.warmLines) };
  }

  private async write(file: string, lines: readonly string[]): Promise<string> {
    const full = path.join(this.dir, file);
    await writeFile(full, lines.join("\n") + "\n");
    return full;
  }
}
