import * as grpc from "@grpc/grpc-js";
import net from "node:net";
import { chmod, lstat, mkdir, unlink } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { NetfenceError } from "@netfence/proto/errors";
import { DaemonService } from "@netfence/proto/daemon";
import { serviceDefinition } from "@netfence/proto/grpc";
import { daemonServiceHandlers, type DaemonServiceImpl } from "./daemon-service.js";

/**
 * DaemonService on the unix socket (mode 0660). A socket file left by a crashed daemon is
 * removed only when nobody answers on it; a live daemon on the same path makes start fail with
 * a clear error instead of stealing its socket.
 */
export class DaemonServer {
  private server: grpc.Server | null = null;
  private ino: number | null = null;

  constructor(
    private readonly socketPath: string,
    private readonly impl: DaemonServiceImpl | Promise<DaemonServiceImpl>,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    await mkdir(path.dirname(this.socketPath), { recursive: true });
    await clearStaleSocket(this.socketPath);
    const server = new grpc.Server({ "grpc.max_receive_message_length": 4 * 1024 * 1024 });
    server.addService(serviceDefinition(DaemonService), daemonServiceHandlers(this.impl));
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix:${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => {
        if (err) reject(new NetfenceError("UNAVAILABLE", `cannot listen on ${this.socketPath}: ${err.message}`, { cause: err }));
        else resolve();
      });
    });
    await chmod(this.socketPath, 0o660);
    this.ino = (await lstat(this.socketPath)).ino;
    this.server = server;
    this.logger.info({ socket: this.socketPath }, "DaemonService listening");
  }

  /** Stops accepting calls, lets running ones finish for up to `graceMs`, removes our socket. */
  async stop(graceMs = 2000): Promise<void> {
    const server = this.server;
    if (server === null) return;
    this.server = null;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, graceMs);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    try {
      if ((await lstat(this.socketPath)).ino === this.ino) await unlink(this.socketPath);
    } catch {
      // already gone
    }
  }
}

/** Removes a socket file nobody listens on; refuses when a daemon answers or the path is not a socket. */
export async function clearStaleSocket(socketPath: string): Promise<void> {
  let st;
  try {
    st = await lstat(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  if (!st.isSocket()) {
    throw new NetfenceError("FAILED_PRECONDITION", `${socketPath} exists and is not a socket; refusing to replace it`);
  }
  const alive = await new Promise<boolean>((resolve) => {
    const s = net.connect(socketPath);
    const done = (v: boolean): void => {
      s.destroy();
      resolve(v);
    };
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
    s.setTimeout(1000, () => done(true));
  });
  if (alive) {
    throw new NetfenceError("ALREADY_EXISTS", `another netfenced is already serving ${socketPath}`, { details: { socket: socketPath } });
  }
  await unlink(socketPath);
}
