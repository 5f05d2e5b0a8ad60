import http2 from "node:http2";
import net from "node:net";
import { NetfenceError } from "@netfence/proto/errors";
import { fromServiceError } from "@netfence/proto/grpc-status";

/**
 * A minimal gRPC client (unary and server-streaming calls) over node:http2 on a unix socket, for
 * the CLI. Why not grpc-js here: loading it costs ~100 ms per CLI run, which dominates commands
 * like `list` (node:http2 loads in ~10 ms); the daemon itself serves with grpc-js. Framing per
 * the gRPC HTTP/2 protocol: each message is a 0 (uncompressed) flag byte, a 4-byte big-endian
 * length and the protobuf bytes; the status comes in the `grpc-status` / `grpc-message` trailers
 * (or in the headers of a trailers-only response).
 */

export class ConnectionFailed extends Error {
  override readonly name = "ConnectionFailed";
  /** The connect error's code (ENOENT, ECONNREFUSED, EACCES, …) when there was one. */
  constructor(message: string, readonly errno?: string) {
    super(message);
  }
}

export class Http2GrpcChannel {
  private session: http2.ClientHttp2Session | null = null;
  private failure: Error | null = null;

  constructor(private readonly socketPath: string) {}

  private connect(): http2.ClientHttp2Session {
    if (this.session !== null && !this.session.destroyed && !this.session.closed) return this.session;
    this.failure = null;
    const session = http2.connect("http://localhost", { createConnection: () => net.connect(this.socketPath) });
    session.on("error", (err: Error) => {
      this.failure = err;
    });
    this.session = session;
    return session;
  }

  private open(path: string, request: Uint8Array, timeoutMs: number): http2.ClientHttp2Stream {
    const headers: http2.OutgoingHttpHeaders = {
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
    };
    if (Number.isFinite(timeoutMs)) headers["grpc-timeout"] = `${Math.max(1, Math.ceil(timeoutMs))}m`;
    const stream = this.connect().request(headers);
    stream.end(frame(request));
    return stream;
  }

  /** One request, one response; rejects with a NetfenceError (status mapped) or ConnectionFailed. */
  unary(path: string, request: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const stream = this.open(path, request, timeoutMs);
      const parser = new FrameParser();
      const messages: Uint8Array[] = [];
      let status: { code: number; message: string } | null = null;
      const timer = Number.isFinite(timeoutMs)
        ? setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), timeoutMs + 1000)
        : null;
      stream.on("response", (h) => {
        if (h["grpc-status"] !== undefined) status = statusOf(h);
      });
      stream.on("trailers", (h) => {
        status = statusOf(h);
      });
      stream.on("data", (chunk: Buffer) => messages.push(...parser.push(chunk)));
      stream.on("error", (err: Error) => {
        if (timer) clearTimeout(timer);
        const e = this.failure ?? err;
        const connect = connectErrorOf(e);
        reject(connect !== null ? new ConnectionFailed(connect.message, connect.code) : e);
      });
      stream.on("close", () => {
        if (timer) clearTimeout(timer);
        if (status === null) {
          const err = this.failure ?? new Error(`stream closed without a gRPC status (rst code ${stream.rstCode ?? "?"})`);
          reject(isConnectError(err) ? new ConnectionFailed(err.message, (err as NodeJS.ErrnoException).code) : new NetfenceError("UNAVAILABLE", err.message, { cause: err }));
        } else if (status.code !== 0) {
          reject(fromServiceError({ code: status.code, details: status.message }));
        } else if (messages.length !== 1) {
          reject(new NetfenceError("INTERNAL", `expected one response message, got ${messages.length}`));
        } else {
          resolve(messages[0]!);
        }
      });
    });
  }

  /** Server-streaming call: yields each response message; closing the iterator cancels the call. */
  async *serverStream(path: string, request: Uint8Array): AsyncGenerator<Uint8Array> {
    const stream = this.open(path, request, Infinity);
    const parser = new FrameParser();
    const queue: Uint8Array[] = [];
    let status: { code: number; message: string } | null = null;
    let ended = false;
    let error: Error | null = null;
    let wake: (() => void) | null = null;
    const notify = (): void => {
      wake?.();
      wake = null;
    };
    stream.on("response", (h) => {
      if (h["grpc-status"] !== undefined) status = statusOf(h);
    });
    stream.on("trailers", (h) => {
      status = statusOf(h);
    });
    stream.on("data", (chunk: Buffer) => {
      queue.push(...parser.push(chunk));
      notify();
    });
    stream.on("error", (err: Error) => {
      error = this.failure ?? err;
      notify();
    });
    stream.on("close", () => {
      ended = true;
      notify();
    });
    try {
      for (;;) {
        const next = queue.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        const connect = error === null ? null : connectErrorOf(error);
        if (connect !== null) throw new ConnectionFailed(connect.message, connect.code);
        if (error !== null) throw error;
        if (ended) {
          const st = status as { code: number; message: string } | null;
          if (st !== null && st.code !== 0) throw fromServiceError({ code: st.code, details: st.message });
          if (st === null) throw new ConnectionFailed("stream closed without a gRPC status");
          return;
        }
        await new Promise<void>((r) => (wake = r));
      }
    } finally {
      if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
    }
  }

  close(): void {
    this.session?.close();
    this.session = null;
  }
}

function frame(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt8(0, 0);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** Splits the response body into length-prefixed messages across chunk boundaries. */
class FrameParser {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Uint8Array[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Uint8Array[] = [];
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(1);
      if (this.buf.length < 5 + len) break;
      if (this.buf[0] !== 0) throw new NetfenceError("INTERNAL", "compressed gRPC messages are not supported");
      out.push(this.buf.subarray(5, 5 + len));
      this.buf = this.buf.subarray(5 + len);
    }
    return out;
  }
}

function statusOf(h: http2.IncomingHttpHeaders): { code: number; message: string } {
  const code = Number(h["grpc-status"] ?? 2);
  const raw = h["grpc-message"];
  let message = typeof raw === "string" ? raw : "";
  try {
    message = decodeURIComponent(message);
  } catch {
    // not percent-encoded after all
  }
  return { code: Number.isInteger(code) ? code : 2, message };
}

/** The socket-level error behind `err` (itself, or the cause of a cancelled HTTP/2 stream), if it is one. */
function connectErrorOf(err: unknown): NodeJS.ErrnoException | null {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 3; e = e.cause, depth++) {
    if (isConnectError(e)) return e as NodeJS.ErrnoException;
  }
  return null;
}

function isConnectError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ECONNREFUSED" || code === "EACCES" || code === "EPERM" || code === "ENOTSOCK";
}
