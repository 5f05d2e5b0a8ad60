import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import type { Logger } from "pino";
import { NetfenceError, type ErrorCode } from "@netfence/proto/errors";
import { decodeFrameHeader, encodeFrame, FRAME_HDR_SIZE, MAX_FRAME, Op } from "./wire-format.js";

/**
 * One running loader child and the framed request/reply protocol over its stdio.
 * Requests are answered in order; each reply echoes the request's seq. Unsolicited frames
 * (packet events) go to `onEvents`. Supervision (restart + re-adopt) is KernelFilter's job:
 * this class only reports the exit through `onExit` and fails the pending requests.
 */
export interface LoaderProcessOptions {
  readonly path: string;
  readonly logger: Logger;
  readonly onEvents: (payload: Buffer) => void;
  readonly onExit: (code: number | null, signal: NodeJS.Signals | null) => void;
}

interface Pending {
  readonly op: number;
  readonly resolve: (payload: Buffer) => void;
  readonly reject: (err: NetfenceError) => void;
}

const OP_NAMES = new Map<number, string>(Object.entries(Op).map(([name, code]) => [code, name]));

/** errno (positive) → our error code. */
function codeForErrno(errno: number): ErrorCode {
  switch (errno) {
    case 2: // ENOENT
    case 19: // ENODEV
    case 6: // ENXIO
      return "NOT_FOUND";
    case 17: // EEXIST
    case 114: // EALREADY
      return "ALREADY_EXISTS";
    case 22: // EINVAL
      return "INVALID_ARGUMENT";
    case 71: // EPROTO: incompatible pins / protocol
      return "FAILED_PRECONDITION";
    case 1: // EPERM
    case 13: // EACCES
      return "PERMISSION_DENIED";
    case 7: // E2BIG
    case 12: // ENOMEM
    case 28: // ENOSPC
      return "RESOURCE_EXHAUSTED";
    default:
      return "INTERNAL";
  }
}

export class LoaderProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly pending = new Map<number, Pending>();
  private nextSeq = 1;
  private buffered: Buffer[] = [];
  private bufferedLen = 0;
  private exited = false;

  private constructor(private readonly opts: LoaderProcessOptions) {
    this.child = spawn(opts.path, [], { stdio: ["pipe", "pipe", "pipe"] });
    this.child.stdout.on("data", (chunk: Buffer) => this.onData(chunk));
    createInterface({ input: this.child.stderr }).on("line", (line) => opts.logger.info({ loader: line }, "loader log"));
    this.child.stdin.on("error", () => undefined); // EPIPE after an exit is reported through 'exit'
    this.child.on("error", (err) => this.onGone(null, null, err));
    this.child.on("exit", (code, signal) => this.onGone(code, signal, null));
  }

  static spawn(opts: LoaderProcessOptions): LoaderProcess {
    return new LoaderProcess(opts);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get alive(): boolean {
    return !this.exited;
  }

  request(op: number, payload: Buffer): Promise<Buffer> {
    if (this.exited) return Promise.reject(new NetfenceError("UNAVAILABLE", "the loader helper is not running"));
    const seq = this.nextSeq;
    this.nextSeq = this.nextSeq >= 0xfffffff0 ? 1 : this.nextSeq + 1;
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(seq, { op, resolve, reject });
      this.child.stdin.write(encodeFrame(seq, op, payload));
    });
  }

  /** Closes stdin (the loader exits on EOF) and waits for the exit; SIGKILL after `graceMs`. */
  async stop(graceMs = 2000): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await done;
    clearTimeout(timer);
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    if (!this.exited) this.child.kill(signal);
  }

  private onData(chunk: Buffer): void {
    this.buffered.push(chunk);
    this.bufferedLen += chunk.length;
    if (this.bufferedLen < FRAME_HDR_SIZE) return;
    let buf = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered, this.bufferedLen);
    let off = 0;
    while (buf.length - off >= FRAME_HDR_SIZE) {
      const { len, seq, op, status } = decodeFrameHeader(buf, off);
      if (len < FRAME_HDR_SIZE || len > MAX_FRAME) {
        this.opts.logger.error({ len }, "loader sent a malformed frame; killing it");
        this.child.kill("SIGKILL");
        return;
      }
      if (buf.length - off < len) break;
      const payload = buf.subarray(off + FRAME_HDR_SIZE, off + len);
      off += len;
      this.dispatch(seq, op, status, payload);
    }
    const rest = buf.subarray(off);
    this.buffered = rest.length ? [Buffer.from(rest)] : [];
    this.bufferedLen = rest.length;
    buf = Buffer.alloc(0);
  }

  private dispatch(seq: number, op: number, status: number, payload: Buffer): void {
    if (seq === 0) {
      if (op === Op.EVENTS) this.opts.onEvents(Buffer.from(payload));
      else this.opts.logger.warn({ op }, "loader sent an unknown unsolicited frame");
      return;
    }
    const p = this.pending.get(seq);
    if (!p) {
      this.opts.logger.warn({ seq, op }, "loader reply for an unknown request");
      return;
    }
    this.pending.delete(seq);
    if (status === 0) {
      p.resolve(Buffer.from(payload));
      return;
    }
    const errno = -status;
    const message = payload.toString("utf8") || `${OP_NAMES.get(op) ?? op} failed with errno ${errno}`;
    p.reject(new NetfenceError(codeForErrno(errno), message, { details: { errno, op: OP_NAMES.get(op) ?? op } }));
  }

  private onGone(code: number | null, signal: NodeJS.Signals | null, err: Error | null): void {
    if (this.exited) return;
    this.exited = true;
    const why = err ? err.message : `exit code ${code ?? "-"}, signal ${signal ?? "-"}`;
    for (const p of this.pending.values()) {
      p.reject(new NetfenceError("UNAVAILABLE", `the loader helper exited (${why}) before answering`));
    }
    this.pending.clear();
    this.opts.onExit(code, signal);
  }
}
