import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { waitFor } from "./daemon-harness.js";
import { NETFENCE_CP } from "./e2e.js";
import { freePort } from "./postgres.js";

/**
 * One `netfence-cp --database` fleet replica as a child process (the built binary), with its own
 * gRPC and admin ports kept across restarts, its JSON log in a temp file; kill9() is a crash.
 */
export class FleetReplica {
  readonly dir: string;
  readonly logFile: string;
  port = 0;
  adminPort = 0;
  private child: ChildProcess | null = null;
  private starts = 0;

  /** `binary`: netfence-cp's main.js (benchmarks running from dist/ pass bench/lib/binaries.ts's). */
  constructor(readonly name: string, readonly databaseUrl: string, readonly binary = NETFENCE_CP) {
    if (!existsSync(binary)) throw new Error(`${binary} is missing: run scripts/bootstrap.sh`);
    this.dir = mkdtempSync(path.join(os.tmpdir(), "nf-fleet-"));
    this.logFile = path.join(this.dir, "netfence-cp.log");
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get adminUrl(): string {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get alive(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Reserves the ports (first time) and starts; resolves when the replica logs that it serves. */
  async start(timeoutMs = 20_000, logLevel = "info"): Promise<Record<string, unknown>> {
    if (this.port === 0) this.port = await freePort();
    if (this.adminPort === 0) this.adminPort = await freePort();
    const fd = openSync(this.logFile, "a");
    const child = spawn(process.execPath, [
      this.binary, "--database", this.databaseUrl, "--listen", this.address, "--admin-listen", `127.0.0.1:${this.adminPort}`,
      "--replica-id", this.name, "--log-level", logLevel,
    ], { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    this.child = child;
    let serving: Record<string, unknown>[] = [];
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`${this.name} exited with ${child.exitCode}:\n${this.log().slice(-2000)}`);
      if (logLevel !== "info") {
        // Quieter levels hide the "serving" line: the admin API answers once everything is up.
        return fetch(`${this.adminUrl}/v1/status`).then((r) => r.ok, () => false);
      }
      serving = this.logLines().filter((l) => l["msg"] === "netfence-cp fleet replica serving");
      return serving.length > this.starts;
    }, `${this.name} serving`, timeoutMs);
    this.starts++;
    return serving[serving.length - 1] ?? {};
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, "utf8") : "";
  }

  logLines(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of this.log().split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // being written
      }
    }
    return out;
  }

  async kill9(): Promise<void> {
    const child = this.child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGKILL");
    await exited;
    this.child = null;
  }

  async cleanup(): Promise<void> {
    await this.kill9();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
