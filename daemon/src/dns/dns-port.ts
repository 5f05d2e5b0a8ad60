import { formatHostPort } from "@netfence/proto/parse";
import dgram from "node:dgram";
import net from "node:net";
import { readFileSync } from "node:fs";
import type { EventEmitter } from "node:events";
import { NetfenceError } from "@netfence/proto/errors";

/**
 * DNS ports are allocated by binding (SPEC §8, issue 10 item 9): an attachment's port is one
 * this daemon actually holds, UDP and TCP, from the moment it is chosen. A port another process
 * holds (an unprivileged user squatting the range, or anything else) is skipped and reported —
 * with the uid holding it, read from /proc/net — instead of failing every later attach with
 * EADDRINUSE. The held sockets are handed to the attachment's DNS server (no window in which
 * the port is free again).
 */

export interface DnsSockets {
  readonly host: string;
  readonly port: number;
  readonly udp: dgram.Socket;
  readonly tcp: net.Server;
}

/** A port bound and held until a DNS server takes the sockets over, or `release()`. */
export class HeldDnsPort {
  private taken = false;

  constructor(readonly sockets: DnsSockets) {}

  get port(): number {
    return this.sockets.port;
  }

  /** Hands the sockets over (once): the caller owns them from now on. */
  take(): DnsSockets {
    if (this.taken) throw new NetfenceError("INTERNAL", `DNS port ${this.sockets.port} was already handed over`);
    this.taken = true;
    return this.sockets;
  }

  async release(): Promise<void> {
    if (this.taken) return;
    this.taken = true;
    await closeSockets(this.sockets);
  }
}

export interface PortTaken {
  readonly port: number;
  /** e.g. "uid 1000 (udp)", or "unknown" when /proc/net does not show the holder. */
  readonly holder: string;
}

/** Resolves on "listening", rejects on "error"; removes both listeners either way (no late rejection). */
export function listening(emitter: EventEmitter): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onListening = (): void => {
      emitter.off("error", onError);
      resolve();
    };
    const onError = (err: Error): void => {
      emitter.off("listening", onListening);
      reject(err);
    };
    emitter.once("listening", onListening);
    emitter.once("error", onError);
  });
}

export async function closeSockets(s: DnsSockets): Promise<void> {
  await Promise.all([
    new Promise<void>((resolve) => s.tcp.close(() => resolve())),
    new Promise<void>((resolve) => {
      try {
        s.udp.close(() => resolve());
      } catch {
        resolve(); // already closed
      }
    }),
  ]);
}

/**
 * The server socket's address lookup: it only ever sends to the source address of a query
 * (rinfo.address, an IP literal), so the literal is handed back at once. Node's default
 * (dns.lookup) checks it with a regular expression and defers the send by a process.nextTick per
 * reply — ~5 % of the daemon's CPU on the cached-answer path (bench/dns/operator-bench.ts --cpu-prof).
 */
function literalLookup(address: string, options: unknown, callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  if (typeof options === "number") {
    callback(null, address, options); // dgram passes the socket's family
    return;
  }
  const family = net.isIP(address);
  if (family === 0) callback(Object.assign(new Error(`not an IP address: ${address}`), { code: "EINVAL" }), address, 0);
  else callback(null, address, family);
}

/**
 * Binds UDP and TCP on `host:port` (port 0: any free port, the same for both). Throws a
 * NetfenceError: ALREADY_EXISTS when the port is in use (details.holder names who holds it),
 * INVALID_ARGUMENT for a host that is not an IP, UNAVAILABLE otherwise.
 */
export async function bindDnsSockets(host: string, port: number): Promise<DnsSockets> {
  if (net.isIP(host) === 0) throw new NetfenceError("INVALID_ARGUMENT", "DNS listen address must be an IP address", { details: { host } });
  const attempts = port === 0 ? 20 : 1;
  let lastError: unknown = null;
  for (let i = 0; i < attempts; i++) {
    const udp = dgram.createSocket({ type: net.isIPv6(host) ? "udp6" : "udp4", lookup: literalLookup });
    try {
      // Listening first: with literalLookup the bind completes (or fails) inside bind().
      const ready = listening(udp);
      udp.bind({ address: host, port, exclusive: true });
      await ready;
    } catch (err) {
      udp.close();
      lastError = err;
      continue;
    }
    const bound = udp.address().port;
    const tcp = net.createServer({ pauseOnConnect: false });
    try {
      tcp.listen({ host, port: bound, exclusive: true });
      await listening(tcp);
    } catch (err) {
      udp.close();
      tcp.close();
      lastError = err;
      continue;
    }
    return { host, port: bound, udp, tcp };
  }
  const inUse = (lastError as { code?: string } | null)?.code === "EADDRINUSE";
  const holder = inUse && port !== 0 ? portHolder(host, port) : null;
  throw new NetfenceError(
    inUse ? "ALREADY_EXISTS" : "UNAVAILABLE",
    `cannot bind DNS server on ${formatHostPort(host, port)}: ${inUse ? `the port is held by another process${holder !== null ? ` (${holder})` : ""}` : ((lastError as Error | null)?.message ?? "unknown")}`,
    { details: { port, holder }, cause: lastError },
  );
}

/**
 * Binds the first free port of `candidates` (in order). Ports held by other processes are
 * skipped and returned in `taken`; RESOURCE_EXHAUSTED when none is free.
 */
export async function bindFirstFree(host: string, candidates: readonly number[]): Promise<{ held: HeldDnsPort; taken: PortTaken[] }> {
  const taken: PortTaken[] = [];
  for (const port of candidates) {
    try {
      return { held: new HeldDnsPort(await bindDnsSockets(host, port)), taken };
    } catch (err) {
      const e = NetfenceError.from(err);
      if (e.code !== "ALREADY_EXISTS") throw e;
      taken.push({ port, holder: typeof e.details["holder"] === "string" ? e.details["holder"] : "unknown" });
    }
  }
  const list = taken.slice(0, 10).map((t) => `${t.port} (${t.holder})`).join(", ");
  throw new NetfenceError(
    "RESOURCE_EXHAUSTED",
    `no free DNS port on ${host}: ${candidates.length} candidate(s) of dns.port_min..dns.port_max` +
      (taken.length > 0 ? `, ${taken.length} held by other processes: ${list}${taken.length > 10 ? ", …" : ""}` : "") +
      "; widen the range or free the ports",
    { details: { host, candidates: candidates.length, takenByOthers: taken.length } },
  );
}

/**
 * Who holds `host:port` (UDP or TCP), from /proc/net/{udp,tcp}{,6} of this network namespace:
 * "uid N (udp)". null when not found (e.g. the holder is gone already).
 */
export function portHolder(host: string, port: number): string | null {
  const v6 = net.isIPv6(host);
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  for (const proto of ["udp", "tcp"] as const) {
    let text: string;
    try {
      text = readFileSync(`/proc/net/${proto}${v6 ? "6" : ""}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 8) continue;
      const local = f[1]!;
      if (!local.endsWith(`:${hexPort}`)) continue;
      // TCP: only listeners (state 0A) hold a port against a bind; UDP: any.
      if (proto === "tcp" && f[3] !== "0A") continue;
      return `uid ${f[7]} (${proto})`;
    }
  }
  return null;
}
