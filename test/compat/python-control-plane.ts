import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { dirname, join, resolve } from "node:path";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "../..");
const SCRIPT = join(HERE, "python_control_plane.py");

/**
 * A Python grpcio interpreter (Debian's python3-grpcio + python3-grpc-tools). Throws — never
 * skips — when none is found, so a missing package fails the suite with the reason.
 */
export function findPythonWithGrpc(): string {
  const candidates = [process.env["NETFENCE_PYTHON"], "/usr/bin/python3", "python3"].filter((c): c is string => !!c);
  for (const python of candidates) {
    const r = spawnSync(python, ["-c", "import grpc, grpc_tools.protoc"], { stdio: "ignore" });
    if (r.status === 0) return python;
  }
  throw new Error(`no python3 with grpcio and grpc_tools found (tried ${candidates.join(", ")}); apt-get install python3-grpcio python3-grpc-tools`);
}

export interface PythonControlPlaneOptions {
  /** SubscribedAck as proto3 JSON, e.g. {"mode":"POLICY_MODE_ALLOWLIST","allowCidrs":[{"cidr":"10.0.0.0/8"}]}. */
  readonly ackPolicy?: unknown;
  /** DnsQueryResponse as proto3 JSON. */
  readonly dnsAnswer?: unknown;
  /** One ControlCommand (proto3 JSON) sent right after every SubscribedAck (id defaults to the attachment). */
  readonly pushAfterSubscribe?: unknown;
  readonly port?: number;
  /** Answer no Subscribed (the test pushes the SubscribedAck itself). */
  readonly noAck?: boolean;
}

type Line = { listening?: number; event?: Record<string, unknown>; pushed?: number; dnsQuery?: Record<string, unknown> };

/** The Python control plane as a child process, speaking JSON lines (see python_control_plane.py). */
export class PythonControlPlane {
  readonly events: Array<Record<string, unknown>> = [];
  readonly dnsQueries: Array<Record<string, unknown>> = [];
  readonly stderr: string[] = [];
  private pushedCounts: number[] = [];

  private constructor(private readonly child: ChildProcessWithoutNullStreams, readonly port: number) {}

  static async start(opts: PythonControlPlaneOptions = {}): Promise<PythonControlPlane> {
    const python = findPythonWithGrpc();
    const args = [SCRIPT, "--proto-dir", join(REPO, "proto"), "--port", String(opts.port ?? 0)];
    if (opts.ackPolicy !== undefined) args.push("--ack-policy", JSON.stringify(opts.ackPolicy));
    if (opts.dnsAnswer !== undefined) args.push("--dns-answer", JSON.stringify(opts.dnsAnswer));
    if (opts.pushAfterSubscribe !== undefined) args.push("--push-after-subscribe", JSON.stringify(opts.pushAfterSubscribe));
    if (opts.noAck) args.push("--no-ack");
    const child = spawn(python, args, { stdio: ["pipe", "pipe", "pipe"] });
    const stderr: string[] = [];
    child.stderr.setEncoding("utf8").on("data", (d: string) => stderr.push(d));
    const lines = createInterface({ input: child.stdout });
    let instance: PythonControlPlane | null = null;
    const port = await new Promise<number>((resolvePort, reject) => {
      const timer = setTimeout(() => reject(new Error(`python control plane did not start: ${stderr.join("")}`)), 30_000);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`python control plane exited with ${code}: ${stderr.join("")}`));
      });
      lines.on("line", (text) => {
        const line = JSON.parse(text) as Line;
        if (line.listening !== undefined) {
          clearTimeout(timer);
          resolvePort(line.listening);
          return;
        }
        if (!instance) return;
        if (line.event) instance.events.push(line.event);
        if (line.dnsQuery) instance.dnsQueries.push(line.dnsQuery);
        if (line.pushed !== undefined) instance.pushedCounts.push(line.pushed);
      });
    });
    instance = new PythonControlPlane(child, port);
    instance.stderr.push(...stderr);
    child.stderr.on("data", (d: string) => instance!.stderr.push(d));
    return instance;
  }

  /** Events of one kind ("sync", "subscribed", "unsubscribed", "heartbeat", "commandResult"), as proto3 JSON. */
  ofKind(kind: string): Array<Record<string, unknown>> {
    return this.events.filter((e) => kind in e).map((e) => e[kind] as Record<string, unknown>);
  }

  /** Sends one ControlCommand (proto3 JSON) on every open stream; resolves with how many streams got it. */
  async push(command: unknown): Promise<number> {
    const before = this.pushedCounts.length;
    this.child.stdin.write(`${JSON.stringify({ push: command })}\n`);
    await this.waitFor(() => this.pushedCounts.length > before, "push");
    return this.pushedCounts[before]!;
  }

  async waitFor(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; python stderr: ${this.stderr.join("")}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once("exit", () => r()));
    this.child.kill("SIGTERM");
    await exited;
  }
}
