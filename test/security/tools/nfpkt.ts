import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Sandbox } from "../../helpers/sandbox.js";

/**
 * The security tests' packet tool (nfpkt.c: crafted frames, raw sockets, a sniffer, bind as a
 * user) from TypeScript. Built on first use into .cache/nfpkt (static, like in the portability
 * guests, which run the same binary).
 */

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "..", "..", "..");
const SOURCE = path.join(HERE, "nfpkt.c");
export const NFPKT = path.join(ROOT, ".cache", "nfpkt");

export function ensureNfpkt(): string {
  if (existsSync(NFPKT) && statSync(NFPKT).mtimeMs >= statSync(SOURCE).mtimeMs) return NFPKT;
  mkdirSync(path.dirname(NFPKT), { recursive: true });
  execFileSync("gcc", ["-O2", "-Wall", "-Wextra", "-Werror", "-static", "-o", NFPKT, SOURCE], { stdio: "pipe", timeout: 60_000 });
  return NFPKT;
}

/** Runs nfpkt in a namespace (optionally in a cgroup); returns its one result line ("sent 3", "ok", "error EPERM (…)"). */
export async function nfpkt(sb: Sandbox, ns: string, args: string[], opts: { cgroup?: string } = {}): Promise<string> {
  const r = await sb.exec(ns, [ensureNfpkt(), ...args], { cgroup: opts.cgroup, allowFail: true, timeoutMs: 15_000 });
  return (r.stdout.trim().split("\n").pop() ?? r.stderr).trim();
}

/** Sends a crafted frame COUNT times from `iface` in `ns`; throws unless it was sent. */
export async function sendFrame(sb: Sandbox, ns: string, iface: string, spec: string[], count = 3): Promise<void> {
  const out = await nfpkt(sb, ns, ["send", iface, String(count), ...spec]);
  if (!out.startsWith("sent ")) throw new Error(`nfpkt send ${spec.join(" ")}: ${out}`);
}

export interface Sniffer {
  /** Frames that arrived at the interface and contained each marker. */
  readonly counts: Promise<Map<string, number>>;
}

/**
 * Captures every frame that arrives at `iface` in `ns` for `ms` milliseconds and counts those that
 * contain each marker. Resolves once the capture socket is bound (send after that).
 */
export async function sniff(sb: Sandbox, ns: string, iface: string, ms: number, marks: readonly string[]): Promise<Sniffer> {
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  const lines: string[] = [];
  const child = sb.spawn(ns, [ensureNfpkt(), "sniff", iface, String(ms), ...marks], {
    onLine: (l) => {
      if (l === "ready") ready();
      else lines.push(l);
    },
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  await Promise.race([isReady, exited.then(() => Promise.reject(new Error(`sniffer on ${iface} failed: ${lines.join("; ")}`)))]);
  const counts = exited.then(() => {
    const m = new Map<string, number>();
    for (const l of lines) {
      const [mark, n] = l.split(" ");
      if (mark !== undefined && n !== undefined && marks.includes(mark)) m.set(mark, Number(n));
    }
    if (m.size !== marks.length) throw new Error(`sniffer on ${iface}: ${lines.join("; ")}`);
    return m;
  });
  return { counts };
}

/** A marker unique to this run: what the sniffer looks for in a crafted frame's payload. */
export function marker(name: string): string {
  return `NF${process.pid.toString(36)}${name}`;
}
