import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fixture } from "./sandbox.js";

/**
 * A fake systemd $NOTIFY_SOCKET (test/fixtures/notify-socket.py: Node has no unix datagram
 * sockets) recording every sd_notify datagram with the sender's pid from SCM_CREDENTIALS.
 */
export class FakeNotifySocket {
  readonly messages: { message: string; pid: number | null }[] = [];

  private constructor(readonly path: string, private readonly dir: string, private readonly child: ChildProcess) {}

  static async start(): Promise<FakeNotifySocket> {
    const dir = mkdtempSync(path.join(os.tmpdir(), "nf-notify-"));
    const socketPath = path.join(dir, "notify.sock");
    const child = spawn("python3", [fixture("notify-socket.py"), socketPath], { stdio: ["ignore", "pipe", "inherit"] });
    const self = new FakeNotifySocket(socketPath, dir, child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("notify socket fixture did not start")), 10_000);
      createInterface({ input: child.stdout! }).on("line", (line) => {
        const v = JSON.parse(line) as { listening?: string; message?: string; pid?: number | null };
        if (v.listening !== undefined) {
          clearTimeout(timer);
          resolve();
        } else if (v.message !== undefined) self.messages.push({ message: v.message, pid: v.pid ?? null });
      });
      child.once("exit", (code) => reject(new Error(`notify socket fixture exited with ${code}`)));
    });
    return self;
  }

  async waitFor(message: string, ms = 10_000): Promise<{ message: string; pid: number | null }> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = this.messages.find((x) => x.message === message);
      if (m !== undefined) return m;
      if (Date.now() > deadline) throw new Error(`no ${message} on the notify socket (got ${JSON.stringify(this.messages)})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  stop(): void {
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
    rmSync(this.dir, { recursive: true, force: true });
  }
}
