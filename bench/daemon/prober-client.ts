import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";

/**
 * Drives one long-lived prober process (prober.ts) in the workload namespace: `moveTo(cgroup)`
 * puts it into a cgroup (written from here, in the root namespace, where the cgroup2 mount is
 * visible), `probe()` sends one UDP/TCP echo probe to a server of the sandbox and returns the
 * outcome with the probe's wall-clock send time.
 */

export interface ProbeResult {
  readonly ok: boolean;
  readonly reason: string;
  /** Epoch ms (sub-ms precision) when the prober sent the first packet. */
  readonly sentAtMs: number;
  readonly doneAtMs: number;
}

interface Reply extends ProbeResult {
  readonly seq: number;
}

export class Prober {
  private readonly waiting = new Map<number, (r: ProbeResult) => void>();
  private seq = 0;

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {}

  static async start(ns: string, script: string, timeoutMs = 15_000): Promise<Prober> {
    const child = spawn("ip", ["netns", "exec", ns, process.execPath, script], { stdio: ["pipe", "pipe", "pipe"] });
    const p = new Prober(child);
    let ready!: () => void;
    const started = new Promise<void>((r) => (ready = r));
    createInterface({ input: child.stdout }).on("line", (line) => {
      const msg = JSON.parse(line) as Partial<Reply> & { ready?: boolean };
      if (msg.ready) return ready();
      const cb = msg.seq === undefined ? undefined : p.waiting.get(msg.seq);
      if (cb !== undefined && msg.seq !== undefined) {
        p.waiting.delete(msg.seq);
        cb({ ok: msg.ok === true, reason: msg.reason ?? "", sentAtMs: msg.sentAtMs ?? 0, doneAtMs: msg.doneAtMs ?? 0 });
      }
    });
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<never>((_, rej) => child.once("exit", (code) => rej(new Error(`prober exited (${code}): ${stderr.slice(0, 500)}`))));
    exited.catch(() => undefined);
    const limit = new Promise<never>((_, rej) => setTimeout(() => rej(new Error("prober did not start")), timeoutMs).unref());
    try {
      await Promise.race([started, exited, limit]);
    } catch (err) {
      p.kill();
      throw err;
    }
    return p;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Moves the prober (all its threads) into `cgroupDir`. */
  async moveTo(cgroupDir: string): Promise<void> {
    await writeFile(path.join(cgroupDir, "cgroup.procs"), String(this.pid));
  }

  probe(kind: "udp" | "tcp", ip: string, port: number, timeoutMs = 500): Promise<ProbeResult> {
    const seq = ++this.seq;
    return new Promise<ProbeResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(seq);
        reject(new Error(`prober gave no answer for probe ${seq} within ${timeoutMs + 5000} ms`));
      }, timeoutMs + 5000);
      this.waiting.set(seq, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.child.stdin.write(`${seq} ${kind} ${ip} ${port} ${timeoutMs}\n`);
    });
  }

  /** Ends the prober (by PID) and waits for it to be gone (a cgroup holding it cannot be removed). */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise<void>((r) => this.child.once("exit", () => r()));
    this.kill();
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
  }

  private kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }
}
