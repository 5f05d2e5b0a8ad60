import type dgram from "node:dgram";
import type net from "node:net";
import type pino from "pino";
import { NetfenceError } from "@netfence/proto/errors";
import type { DnsPolicy } from "../policy/policy.js";
import type { DnsProxy } from "./dns-proxy.js";
import { DEFAULT_DNS_QUOTAS, type DnsQuotas } from "./dns-quotas.js";
import type { DnsEventSink } from "./dns-events.js";
import type { DnsOutcome, DnsOutcomeHook } from "./dns-outcomes.js";
import { bindDnsSockets, closeSockets, HeldDnsPort, type DnsSockets } from "./dns-port.js";
import { formatHostPort } from "@netfence/proto/parse";
import { DEFAULT_MIN_TTL_SECONDS, DEFAULT_PROXY_TIMEOUT_MS, DnsQueryHandler, isSettled, type QueryContext } from "./dns-query.js";
import { HostAddresses } from "./host-addresses.js";
import { DEFAULT_ANSWER_CACHE_ENTRIES } from "./answer-cache.js";
import type { LearnedAddressSink } from "./learned-sink.js";
import type { DnsServerStats } from "./dns-servers.js";
import { SourceAccess } from "./source-access.js";
import { DEFAULT_UPSTREAM_OPTIONS, UpstreamPool, parseUpstreamAddress } from "./upstream.js";

/**
 * One attachment's DNS server: UDP and TCP on the same port (dns-port.ts binds them). This file is
 * the front end — sockets, who may ask (tenant isolation: source-access.ts), TCP framing and
 * connection quotas; what is answered is dns-query.ts.
 *
 * A source the attachment's server does not serve is dropped without a reply (counted and
 * reported, throttled). TCP: at most `tcpConnections` open connections per attachment and
 * `tcpPerSource` per source address; a connection over either is closed at once.
 */

export interface TcpLimits {
  /** Largest query accepted over TCP; a longer length prefix closes the connection. */
  readonly maxMessageBytes: number;
  /** A connection with no traffic for this long is closed. */
  readonly idleTimeoutMs: number;
  /** Queries answered concurrently per connection before reading pauses. */
  readonly maxPipelined: number;
}

export const DEFAULT_TCP_LIMITS: TcpLimits = { maxMessageBytes: 4096, idleTimeoutMs: 10_000, maxPipelined: 16 };
export { DEFAULT_MIN_TTL_SECONDS, DEFAULT_PROXY_TIMEOUT_MS };
/** Queries being worked on at once per server; UDP queries beyond it are dropped (clients retry). */
export const MAX_PENDING_QUERIES = 4096;

export interface AttachmentDnsServerOptions {
  readonly attachmentId: string;
  /** Port 0 = any free port (tests); ignored when `held` is given. */
  readonly listen: { readonly host: string; readonly port: number };
  /** Sockets already bound for this attachment (port allocation by binding), handed over. */
  readonly held?: HeldDnsPort;
  readonly getPolicy: () => DnsPolicy;
  readonly defaultUpstreams: readonly string[];
  readonly learned: LearnedAddressSink;
  readonly proxy?: DnsProxy;
  readonly minTtlSeconds?: number;
  /** Answer cache entries (DEFAULT_ANSWER_CACHE_ENTRIES when absent; 0 = no cache). */
  readonly answerCacheEntries?: number;
  readonly logger: pino.Logger;
  /** Shared by the servers of one factory; a private pool is made (and closed on stop) when absent. */
  readonly upstreamPool?: UpstreamPool;
  readonly upstreamTimeoutMs?: number;
  /** How long a proxy-mode query waits for the control plane before SERVFAIL (default 3 s). */
  readonly proxyTimeoutMs?: number;
  readonly tcp?: Partial<TcpLimits>;
  /** Per-attachment quotas (DEFAULT_DNS_QUOTAS when absent). */
  readonly quotas?: DnsQuotas;
  /** Query types answered REFUSED without asking anyone. */
  readonly refuseTypes?: readonly number[];
  /** Who may ask (default: an interface attachment without named workload addresses). */
  readonly kind?: "interface" | "cgroup";
  readonly workloadAddresses?: readonly string[];
  /** The host's addresses (shared by a factory's servers); one of its own when absent. */
  readonly hostAddresses?: HostAddresses;
  readonly report?: DnsEventSink;
  /** Host-wide outcome counts (metrics). */
  readonly onOutcome?: DnsOutcomeHook;
}

export type { DnsServerStats } from "./dns-servers.js";

export interface DnsServerDetailedStats extends DnsServerStats {
  readonly outcomes: Readonly<Record<DnsOutcome, number>>;
}

export class AttachmentDnsServer {
  private readonly log: pino.Logger;
  private readonly handler: DnsQueryHandler;
  private readonly access: SourceAccess;
  private readonly tcpLimits: TcpLimits;
  private readonly quotas: DnsQuotas;
  private readonly pool: UpstreamPool;
  private readonly connections = new Set<net.Socket>();
  private readonly perSource = new Map<string, number>();
  private readonly report: DnsEventSink;
  private readonly udp: dgram.Socket;
  private readonly tcp: net.Server;
  private pendingQueries = 0;
  private stopped = false;
  readonly address: string;

  private constructor(private readonly opts: AttachmentDnsServerOptions, sockets: DnsSockets) {
    this.udp = sockets.udp;
    this.tcp = sockets.tcp;
    this.address = formatHostPort(sockets.host, sockets.port);
    this.log = opts.logger.child({ attachmentId: opts.attachmentId, component: "dns" });
    this.quotas = opts.quotas ?? DEFAULT_DNS_QUOTAS;
    this.tcpLimits = { ...DEFAULT_TCP_LIMITS, ...opts.tcp };
    const timeoutMs = opts.upstreamTimeoutMs ?? opts.upstreamPool?.options.timeoutMs ?? DEFAULT_UPSTREAM_OPTIONS.timeoutMs;
    this.pool = opts.upstreamPool ?? new UpstreamPool({ ...DEFAULT_UPSTREAM_OPTIONS, timeoutMs });
    this.report = opts.report ?? (() => undefined);
    this.access = new SourceAccess({
      kind: opts.kind ?? "interface",
      workloadAddresses: opts.workloadAddresses ?? [],
      listenHost: sockets.host,
      host: opts.hostAddresses ?? new HostAddresses(),
    });
    this.handler = new DnsQueryHandler({
      attachmentId: opts.attachmentId,
      listen: { host: sockets.host, port: sockets.port },
      getPolicy: opts.getPolicy,
      defaultUpstreams: opts.defaultUpstreams,
      learned: opts.learned,
      proxy: opts.proxy,
      minTtlSeconds: opts.minTtlSeconds ?? DEFAULT_MIN_TTL_SECONDS,
      answerCacheEntries: opts.answerCacheEntries ?? DEFAULT_ANSWER_CACHE_ENTRIES,
      logger: opts.logger,
      pool: this.pool,
      timeoutMs,
      proxyTimeoutMs: opts.proxyTimeoutMs ?? DEFAULT_PROXY_TIMEOUT_MS,
      quotas: this.quotas,
      refuseTypes: new Set(opts.refuseTypes ?? []),
      report: this.report,
      onOutcome: opts.onOutcome,
    });
  }

  static async start(opts: AttachmentDnsServerOptions): Promise<AttachmentDnsServer> {
    for (const upstream of opts.defaultUpstreams) parseUpstreamAddress(upstream); // fail early on config errors
    const sockets = opts.held !== undefined ? opts.held.take() : await bindDnsSockets(opts.listen.host, opts.listen.port);
    let server: AttachmentDnsServer;
    try {
      server = new AttachmentDnsServer(opts, sockets);
    } catch (err) {
      await closeSockets(sockets);
      throw NetfenceError.from(err);
    }
    server.wire();
    server.log.info({ address: server.address, answers: server.access.describe() }, "DNS server listening (udp+tcp)");
    return server;
  }

  stats(): DnsServerStats {
    return { allowed: BigInt(this.handler.outcomes.get("allowed")), blocked: BigInt(this.handler.outcomes.blocked) };
  }

  detailedStats(): DnsServerDetailedStats {
    return { ...this.stats(), outcomes: this.handler.outcomes.snapshot() };
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const socket of this.connections) socket.destroy();
    this.connections.clear();
    await closeSockets({ host: "", port: 0, udp: this.udp, tcp: this.tcp });
    this.handler.stop(); // releases its upstreams (a private pool's sockets close with the last release)
    this.log.info({ address: this.address }, "DNS server stopped");
  }

  /** Answers one query as if it came from `src` (exposed for the front ends and for tests). Never throws. */
  answer(query: Buffer, viaTcp: boolean, src = "127.0.0.1", srcPort = 0): Promise<Buffer | null> {
    return this.handler.answer(query, { viaTcp, src, srcPort });
  }

  private wire(): void {
    try {
      this.udp.setRecvBufferSize(1 << 20);
      this.udp.setSendBufferSize(1 << 20);
    } catch {
      // capped by net.core.rmem_max/wmem_max; the defaults still work
    }
    this.udp.on("message", (msg, rinfo) => this.onUdp(msg, rinfo));
    this.udp.on("error", (err) => this.log.error({ err: err.message }, "DNS UDP socket error"));
    this.tcp.on("connection", (socket) => this.onTcp(socket));
    this.tcp.on("error", (err) => this.log.error({ err: err.message }, "DNS TCP server error"));
  }

  /** A source this server does not answer: count, report (throttled), never reply. */
  private foreign(src: string, srcPort: number, viaTcp: boolean): void {
    this.handler.outcomes.count(viaTcp ? "tcp-rejected" : "foreign");
    const [host, port] = splitAddress(this.address);
    this.report({ attachmentId: this.opts.attachmentId, reason: "dns-foreign-source", src, srcPort, dst: host, dstPort: port, protocol: viaTcp ? 6 : 17, rule: "" });
  }

  private onUdp(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (!this.access.allows(rinfo.address)) {
      this.foreign(rinfo.address, rinfo.port, false);
      return;
    }
    if (this.pendingQueries >= MAX_PENDING_QUERIES) {
      this.handler.outcomes.count("dropped");
      return;
    }
    const ctx = { viaTcp: false, src: rinfo.address, srcPort: rinfo.port };
    // Settled synchronously (over the qps quota, malformed, refused type): no promise at all.
    const screened = this.handler.screen(msg, ctx);
    if (isSettled(screened)) {
      this.sendUdp(screened, rinfo);
      return;
    }
    this.pendingQueries++;
    void this.handler.resolve(msg, screened, ctx).then((reply) => {
      this.pendingQueries--;
      this.sendUdp(reply, rinfo);
    });
  }

  private sendUdp(reply: Buffer | null, rinfo: dgram.RemoteInfo): void {
    if (reply === null || this.stopped) return;
    try {
      // No callback: a failed send surfaces as the socket's 'error' event (logged in wire()).
      this.udp.send(reply, rinfo.port, rinfo.address);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, "DNS UDP reply not sent");
    }
  }

  /** Admits a TCP connection under the source check and the connection quotas; false = closed. */
  private admit(socket: net.Socket): string | null {
    const src = socket.remoteAddress ?? "";
    if (this.stopped || !this.access.allows(src)) {
      if (!this.stopped) this.foreign(src, socket.remotePort ?? 0, true);
      socket.destroy();
      return null;
    }
    const fromSource = this.perSource.get(src) ?? 0;
    const over = this.connections.size >= this.quotas.tcpConnections ? "tcp-connections" : fromSource >= this.quotas.tcpPerSource ? "tcp-per-source" : null;
    if (over !== null) {
      this.handler.outcomes.count("tcp-rejected");
      const [host, port] = splitAddress(this.address);
      this.report({ attachmentId: this.opts.attachmentId, reason: "dns-quota-tcp", src, srcPort: socket.remotePort ?? 0, dst: host, dstPort: port, protocol: 6, rule: over });
      socket.destroy();
      return null;
    }
    this.connections.add(socket);
    this.perSource.set(src, fromSource + 1);
    socket.on("close", () => {
      this.connections.delete(socket);
      const n = (this.perSource.get(src) ?? 1) - 1;
      if (n <= 0) this.perSource.delete(src);
      else this.perSource.set(src, n);
    });
    return src;
  }

  private onTcp(socket: net.Socket): void {
    socket.on("error", () => socket.destroy());
    const src = this.admit(socket);
    if (src === null) return;
    const srcPort = socket.remotePort ?? 0;
    socket.setNoDelay(true);
    socket.setTimeout(this.tcpLimits.idleTimeoutMs, () => socket.destroy());
    let buffered: Buffer = Buffer.alloc(0);
    let inProgress = 0;
    // Parses whole frames while fewer than maxPipelined queries are being answered; reading is
    // paused meanwhile, so one connection can never have more than that in progress.
    const pump = (): void => {
      while (buffered.length >= 2 && inProgress < this.tcpLimits.maxPipelined) {
        const length = buffered.readUInt16BE(0);
        if (length > this.tcpLimits.maxMessageBytes) {
          this.log.debug({ length, max: this.tcpLimits.maxMessageBytes }, "oversized DNS message over TCP; closing");
          this.handler.outcomes.count("dropped");
          socket.destroy();
          return;
        }
        if (buffered.length < 2 + length) break;
        const query = Buffer.from(buffered.subarray(2, 2 + length));
        buffered = buffered.subarray(2 + length);
        inProgress++;
        void this.handler.answer(query, { viaTcp: true, src, srcPort }).then((reply) => {
          inProgress--;
          if (socket.destroyed) return;
          if (reply !== null) {
            const frame = Buffer.allocUnsafe(2 + reply.length);
            frame.writeUInt16BE(reply.length, 0);
            reply.copy(frame, 2);
            socket.write(frame);
          }
          pump();
        });
      }
      if (inProgress >= this.tcpLimits.maxPipelined) socket.pause();
      else socket.resume();
    };
    socket.on("data", (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      pump();
    });
  }
}

function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(":");
  return [address.slice(0, i).replace(/^\[|\]$/g, ""), Number(address.slice(i + 1))];
}

export type { QueryContext };
