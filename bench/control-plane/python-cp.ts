import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";

/**
 * The Python grpcio control plane of test/compat (python_control_plane.py) driven from a
 * benchmark: started with a one-entry SubscribedAck, a large command staged once (parsed in
 * Python, untimed), then sent on every open stream by `send()`; every line it writes carries its
 * wall clock (`wallMs`), so the benchmark reads when Python sent a command and when the
 * daemon's CommandResult reached Python.
 */

type Line = { sentWallMs?: number; listening?: number; event?: Record<string, unknown>; staged?: string; sent?: string; streams?: number; wallMs?: number };

export interface CommandResultSeen {
  readonly commandId: string;
  readonly applied: boolean;
  readonly error: string;
  /** Wall clock (epoch ms) when Python wrote the event: the result reached the control plane. */
  readonly wallMs: number;
}

export class PythonBenchControlPlane {
  private readonly waiters: Array<{ pred: (l: Line) => boolean; resolve: (l: Line) => void }> = [];
  readonly results = new Map<string, CommandResultSeen>();
  readonly subscribed: string[] = [];
  private stderr = "";

  private constructor(private readonly child: ChildProcessWithoutNullStreams, readonly port: number) {}

  static async start(ackPolicy: unknown): Promise<PythonBenchControlPlane> {
    const python = process.env["NETFENCE_PYTHON"] ?? "/usr/bin/python3";
    if (spawnSync(python, ["-c", "import grpc, grpc_tools.protoc"], { stdio: "ignore" }).status !== 0) {
      throw new Error(`${python} has no grpcio/grpc_tools (apt-get install python3-grpcio python3-grpc-tools)`);
    }
    const root = projectRoot();
    const child = spawn(python, [path.join(root, "test/compat/python_control_plane.py"), "--proto-dir", path.join(root, "proto"), "--ack-policy", JSON.stringify(ackPolicy)], { stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    let cp: PythonBenchControlPlane | null = null;
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`python control plane did not start: ${stderr}`)), 30_000);
      child.once("exit", (code) => reject(new Error(`python control plane exited (${code}): ${stderr}`)));
      createInterface({ input: child.stdout }).on("line", (text) => {
        const line = JSON.parse(text) as Line;
        if (line.listening !== undefined) {
          clearTimeout(timer);
          resolve(line.listening);
        } else cp?.onLine(line);
      });
    });
    cp = new PythonBenchControlPlane(child, port);
    cp.stderr = stderr;
    child.stderr.on("data", (d: string) => (cp!.stderr += d));
    return cp;
  }

  private onLine(line: Line): void {
    const ev = line.event;
    const result = ev?.["commandResult"] as { commandId?: string; applied?: boolean; error?: string } | undefined;
    if (result?.commandId !== undefined) {
      this.results.set(result.commandId, { commandId: result.commandId, applied: result.applied === true, error: result.error ?? "", wallMs: line.wallMs ?? 0 });
    }
    const sub = ev?.["subscribed"] as { id?: string } | undefined;
    if (sub?.id !== undefined) this.subscribed.push(sub.id);
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i]!;
      if (w.pred(line)) {
        this.waiters.splice(i, 1);
        w.resolve(line);
      }
    }
  }

  private request(req: unknown, pred: (l: Line) => boolean, what: string, ms = 60_000): Promise<Line> {
    return new Promise<Line>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`python control plane: no ${what} within ${ms} ms: ${this.stderr.slice(-500)}`)), ms);
      this.waiters.push({ pred, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      this.child.stdin.write(`${JSON.stringify(req)}\n`);
    });
  }

  /** Parses `command` (proto3 JSON of a ControlCommand) in Python and keeps it under `key`. */
  async stage(key: string, command: unknown): Promise<void> {
    await this.request({ stage: key, command }, (l) => l.staged === key, `staged ${key}`);
  }

  /** Puts the staged command on every open stream; resolves with Python's wall clock at that moment. */
  async send(key: string): Promise<{ wallMs: number; streams: number }> {
    const l = await this.request({ send: key }, (x) => x.sent === key, `sent ${key}`);
    return { wallMs: l.sentWallMs ?? 0, streams: l.streams ?? 0 };
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise<void>((r) => this.child.once("exit", () => r()));
    this.child.kill("SIGTERM");
    await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))]);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }
}
