import dgram from "node:dgram";
import net from "node:net";
import { performance } from "node:perf_hooks";
import { NetfenceError } from "@netfence/proto/errors";
import { firstQuestionEnd, isResponse, isTruncated, readId, sameQuestion, writeId } from "./dns-wire.js";
import { parseHostPort, type HostPort } from "@netfence/proto/parse";

/**
 * A lean DNS forwarder. Each upstream address gets ONE shared UDP socket (not one per query):
 * a query's id is remapped to a free 16-bit id of that socket, the reply is matched by id, source
 * address and question, and gets the client's id back. A reply with TC set is retried over TCP
 * (one short-lived connection, RFC 7766 framing). Failures and timeouts reject with a
 * NetfenceError (UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED), which the server turns
 * into SERVFAIL.
 */

/** An upstream resolver: an IP address and port ("ip", "ip:port", "[v6]", "[v6]:port"; port 53 when absent). */
export interface UpstreamAddress extends HostPort {
  readonly family: 4 | 6;
}

/** INVALID_ARGUMENT unless `text` is an IP address with an optional port (the contract's host:port parser). */
export function parseUpstreamAddress(text: string): UpstreamAddress {
  const a = parseHostPort(text, { defaultPort: 53 });
  if (a.family === null) throw new NetfenceError("INVALID_ARGUMENT", `DNS upstream "${text}" must be an IP address`);
  return { ...a, family: a.family };
}

export interface UpstreamOptions {
  /** Per attempt (UDP, then TCP on truncation). */
  readonly timeoutMs: number;
  /** Queries waiting on one upstream socket; more are refused at once (RESOURCE_EXHAUSTED). */
  readonly maxInFlight: number;
}

// Per attachment, the `inflight` quota bounds its share; this bounds the sum (16-bit query ids per socket).
export const DEFAULT_UPSTREAM_OPTIONS: UpstreamOptions = { timeoutMs: 2000, maxInFlight: 16384 };

const MAX_TCP_MESSAGE = 65535;

interface Pending {
  readonly clientId: number;
  readonly query: Buffer;
  readonly questionEnd: number;
  readonly resolve: (reply: Buffer) => void;
  readonly reject: (err: NetfenceError) => void;
  /** performance.now() deadline; entries are in send order, so deadlines are ascending. */
  readonly deadline: number;
}

/**
 * One upstream over one shared, connected UDP socket (created lazily, re-created after a socket
 * error). Connected: no address lookup per send, the kernel drops datagrams from other sources,
 * and an ICMP port-unreachable fails the queries at once instead of waiting for the timeout.
 * Timeouts use one timer per upstream, not one per query: the in-flight Map keeps send order,
 * so the sweep stops at the first entry that is still in time.
 */
export class UdpUpstream {
  private socket: dgram.Socket | null = null;
  private readonly inFlight = new Map<number, Pending>();
  private sweepTimer: NodeJS.Timeout | null = null;
  /** Queries sent while the socket connects (Node refuses sends on a socket still connecting). */
  private waitingForConnect: Array<[number, Buffer]> | null = null;
  private closed = false;

  constructor(
    readonly address: UpstreamAddress,
    private readonly options: UpstreamOptions = DEFAULT_UPSTREAM_OPTIONS,
  ) {}

  get pending(): number {
    return this.inFlight.size;
  }

  /** Sends `query` (not modified) and resolves with the reply carrying the query's own id. */
  query(query: Buffer): Promise<Buffer> {
    if (this.closed) return Promise.reject(new NetfenceError("UNAVAILABLE", "DNS upstream closed", { details: { upstream: this.address.key } }));
    if (this.inFlight.size >= this.options.maxInFlight) {
      return Promise.reject(new NetfenceError("RESOURCE_EXHAUSTED", "too many DNS queries in flight to upstream", {
        details: { upstream: this.address.key, inFlight: this.inFlight.size },
      }));
    }
    const questionEnd = firstQuestionEnd(query);
    if (questionEnd < 0) return Promise.reject(new NetfenceError("INVALID_ARGUMENT", "DNS query has no question"));
    const socket = this.ensureSocket();
    const id = this.freeId();
    const wire = Buffer.from(query);
    writeId(wire, id);
    return new Promise<Buffer>((resolve, reject) => {
      const deadline = performance.now() + this.options.timeoutMs;
      const entry: Pending = { clientId: readId(query), query, questionEnd, resolve, reject, deadline };
      this.inFlight.set(id, entry);
      if (this.sweepTimer === null) this.armSweep(this.options.timeoutMs);
      if (this.waitingForConnect !== null) this.waitingForConnect.push([id, wire]);
      else this.send(socket, id, wire);
    });
  }

  private send(socket: dgram.Socket, id: number, wire: Buffer): void {
    socket.send(wire, (err) => {
      const entry = this.inFlight.get(id);
      if (!err || entry === undefined) return;
      this.inFlight.delete(id);
      entry.reject(new NetfenceError("UNAVAILABLE", `cannot send to DNS upstream: ${err.message}`, { details: { upstream: this.address.key }, cause: err }));
    });
  }

  close(): void {
    this.closed = true;
    this.failAll(new NetfenceError("UNAVAILABLE", "DNS upstream closed", { details: { upstream: this.address.key } }));
    this.socket?.close();
    this.socket = null;
    this.waitingForConnect = null;
  }

  private freeId(): number {
    // Random ids make blind spoofing of replies harder; the in-flight bound keeps this loop short.
    for (;;) {
      const id = (Math.random() * 0x10000) | 0;
      if (!this.inFlight.has(id)) return id;
    }
  }

  private armSweep(delayMs: number): void {
    this.sweepTimer = setTimeout(() => this.sweep(), Math.max(1, Math.ceil(delayMs)));
    this.sweepTimer.unref();
  }

  private sweep(): void {
    this.sweepTimer = null;
    const now = performance.now();
    for (const [id, entry] of this.inFlight) {
      if (entry.deadline > now) {
        this.armSweep(entry.deadline - now);
        return;
      }
      this.inFlight.delete(id);
      entry.reject(new NetfenceError("DEADLINE_EXCEEDED", "DNS upstream did not answer in time", {
        details: { upstream: this.address.key, timeoutMs: this.options.timeoutMs },
      }));
    }
  }

  private ensureSocket(): dgram.Socket {
    if (this.socket) return this.socket;
    const socket = dgram.createSocket({ type: this.address.family === 6 ? "udp6" : "udp4" });
    socket.on("message", (msg) => this.onMessage(msg));
    socket.on("error", (err) => {
      if (this.socket === socket) {
        this.socket = null;
        this.waitingForConnect = null;
      }
      socket.close();
      this.failAll(new NetfenceError("UNAVAILABLE", `DNS upstream socket failed: ${err.message}`, { details: { upstream: this.address.key }, cause: err }));
    });
    const waiting: Array<[number, Buffer]> = [];
    this.waitingForConnect = waiting;
    socket.on("connect", () => {
      try {
        socket.setRecvBufferSize(1 << 20);
      } catch {
        // the kernel caps it at net.core.rmem_max; the default still works, only bursts drop sooner
      }
      if (this.waitingForConnect === waiting) this.waitingForConnect = null;
      for (const [id, wire] of waiting) if (this.inFlight.has(id)) this.send(socket, id, wire);
    });
    socket.connect(this.address.port, this.address.host);
    socket.unref();
    this.socket = socket;
    return socket;
  }

  private onMessage(msg: Buffer): void {
    if (msg.length < 12 || !isResponse(msg)) return;
    const id = readId(msg);
    const entry = this.inFlight.get(id);
    if (!entry || !sameQuestion(entry.query, entry.questionEnd, msg)) return; // late, stray or spoofed
    this.inFlight.delete(id);
    writeId(msg, entry.clientId);
    entry.resolve(msg);
  }

  private failAll(err: NetfenceError): void {
    const entries = [...this.inFlight.values()];
    this.inFlight.clear();
    if (this.sweepTimer !== null) {
      clearTimeout(this.sweepTimer);
      this.sweepTimer = null;
    }
    for (const entry of entries) entry.reject(err);
  }
}

/** One query over a fresh TCP connection (used when the UDP reply was truncated). */
export function tcpQuery(address: UpstreamAddress, query: Buffer, timeoutMs: number): Promise<Buffer> {
  const questionEnd = firstQuestionEnd(query);
  if (questionEnd < 0) return Promise.reject(new NetfenceError("INVALID_ARGUMENT", "DNS query has no question"));
  return new Promise<Buffer>((resolve, reject) => {
    const socket = net.connect({ host: address.host, port: address.port });
    let received: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (err: NetfenceError | null, reply?: Buffer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(reply!);
    };
    const timer = setTimeout(() => finish(new NetfenceError("DEADLINE_EXCEEDED", "DNS upstream did not answer over TCP in time", {
      details: { upstream: address.key, timeoutMs },
    })), timeoutMs);
    socket.on("connect", () => {
      const frame = Buffer.alloc(2 + query.length);
      frame.writeUInt16BE(query.length, 0);
      query.copy(frame, 2);
      socket.write(frame);
    });
    socket.on("data", (chunk: Buffer) => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      if (received.length < 2) return;
      const length = received.readUInt16BE(0);
      if (length > MAX_TCP_MESSAGE) return finish(new NetfenceError("UNAVAILABLE", "DNS upstream sent an oversized TCP message"));
      if (received.length < 2 + length) return;
      const reply = Buffer.from(received.subarray(2, 2 + length));
      if (reply.length < 12 || !isResponse(reply) || readId(reply) !== readId(query) || !sameQuestion(query, questionEnd, reply)) {
        return finish(new NetfenceError("UNAVAILABLE", "DNS upstream sent a TCP reply that does not match the query", { details: { upstream: address.key } }));
      }
      finish(null, reply);
    });
    socket.on("error", (err) => finish(new NetfenceError("UNAVAILABLE", `DNS upstream TCP failed: ${err.message}`, { details: { upstream: address.key }, cause: err })));
    socket.on("close", () => finish(new NetfenceError("UNAVAILABLE", "DNS upstream closed the TCP connection before answering", { details: { upstream: address.key } })));
  });
}

/**
 * The shared UDP upstreams of all DNS servers built by one factory, reference-counted by address
 * so N attachments using the same resolver share one socket.
 */
export class UpstreamPool {
  private readonly upstreams = new Map<string, { upstream: UdpUpstream; refs: number }>();

  constructor(readonly options: UpstreamOptions = DEFAULT_UPSTREAM_OPTIONS) {}

  acquire(address: UpstreamAddress): UdpUpstream {
    let entry = this.upstreams.get(address.key);
    if (!entry) {
      entry = { upstream: new UdpUpstream(address, this.options), refs: 0 };
      this.upstreams.set(address.key, entry);
    }
    entry.refs += 1;
    return entry.upstream;
  }

  release(address: UpstreamAddress): void {
    const entry = this.upstreams.get(address.key);
    if (!entry) return;
    entry.refs -= 1;
    if (entry.refs <= 0) {
      this.upstreams.delete(address.key);
      entry.upstream.close();
    }
  }

  get size(): number {
    return this.upstreams.size;
  }
}

/**
 * Forwards one query: the upstreams in order, UDP first and TCP when the UDP reply is truncated
 * and `tcpOnTruncation` (TCP clients); the next upstream only when one fails or times out. An
 * upstream's own error rcode (e.g. NXDOMAIN, SERVFAIL) is an answer and is returned as such.
 */
export async function forwardQuery(
  upstreams: readonly UdpUpstream[],
  query: Buffer,
  tcpOnTruncation: boolean,
  timeoutMs: number,
): Promise<Buffer> {
  let lastError: NetfenceError | null = null; // built lazily: an Error captures a stack trace
  for (const upstream of upstreams) {
    try {
      const reply = await upstream.query(query);
      if (tcpOnTruncation && isTruncated(reply)) return await tcpQuery(upstream.address, query, timeoutMs);
      return reply;
    } catch (err) {
      lastError = NetfenceError.from(err, "UNAVAILABLE");
      if (lastError.code === "INVALID_ARGUMENT") throw lastError;
    }
  }
  throw lastError ?? new NetfenceError("UNAVAILABLE", "no DNS upstream configured");
}
