import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { DaemonProcess, ensureBuilt, waitFor } from "./daemon-harness.js";
import { probe, type Sandbox } from "./sandbox.js";

/**
 * End-to-end helpers on top of daemon-harness.ts and sandbox.ts: a daemon whose DNS settings
 * the test chooses (listen address on the sandbox bridge, our own upstream), a dnsmasq upstream
 * inside a sandbox namespace with its query log, `dig` from a namespace, the `netfence-cp`
 * binary as a child process, and small parsers for the CLI's output.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const NETFENCE_CP = path.join(ROOT, "control-plane-example", "dist", "main.js");
export const E2E_FIXTURES = path.join(ROOT, "test", "e2e", "fixtures");

// ------------------------------------------------------------------ daemon with chosen DNS settings

export interface E2eDaemonOptions {
  readonly pinRoot: string;
  readonly dns: {
    readonly listenAddr: string;
    /** "ip:port" — always one of the test's own servers. */
    readonly upstream: string;
    /** e.g. "1s" */
    readonly minTtl?: string;
    /** More keys under `dns:` as YAML lines, e.g. ["refuse_types: [TXT]", "quotas: { qps: 50 }"]. */
    readonly extra?: readonly string[];
  };
  readonly controlPlane?: { readonly url: string; readonly ackTimeout?: string; readonly heartbeat?: string };
  /** Extra top-level YAML (default_policy, metadata, …); must not contain dns/control_plane/socket/bpf keys. */
  readonly yaml?: string;
  readonly logLevel?: string;
  readonly ports?: number;
  /** Serve Prometheus metrics on 127.0.0.1 (a port at the end of this daemon's own port block). */
  readonly metrics?: boolean;
  /** bpf.attach_method (default: the daemon's, auto). */
  readonly attachMethod?: "auto" | "tcx" | "clsact";
}

/**
 * DaemonProcess with the test's own `dns` and `control_plane` blocks: the base class writes its
 * default config (DNS on 127.0.0.1, upstream 127.0.0.1:9); this one rewrites the same file with
 * the same socket, data_dir, pin root and port range, so everything else (start, kill9, cli,
 * cleanup) is the harness's.
 */
export class E2eDaemon extends DaemonProcess {
  /** "127.0.0.1:port" of the metrics endpoint, when enabled. */
  readonly metricsAddress: string | null;

  constructor(readonly e2e: E2eDaemonOptions) {
    super({ pinRoot: e2e.pinRoot, ports: e2e.ports });
    const ports = Math.min(e2e.ports ?? 50, 329);
    const cp = e2e.controlPlane;
    // The harness gives each daemon a block of 330 ports from portMin; DNS uses the first `ports`.
    this.metricsAddress = e2e.metrics ? `127.0.0.1:${this.portMin + 329}` : null;
    writeFileSync(
      this.configFile,
      [
        `socket: ${this.socket}`,
        `data_dir: ${path.join(this.dir, "data")}`,
        `log_level: ${e2e.logLevel ?? "info"}`,
        `bpf: { pin_root: ${e2e.pinRoot}${e2e.attachMethod ? `, attach_method: ${e2e.attachMethod}` : ""} }`,
        "dns:",
        `  listen_addr: "${e2e.dns.listenAddr}"`,
        `  port_min: ${this.portMin}`,
        `  port_max: ${this.portMin + ports - 1}`,
        `  upstream: "${e2e.dns.upstream}"`,
        `  port_guard_cgroup: "${this.guardCgroup}"`,
        e2e.dns.minTtl !== undefined ? `  min_ttl: ${e2e.dns.minTtl}` : "",
        ...(e2e.dns.extra ?? []).map((line) => `  ${line}`),
        ...(cp
          ? [
              "control_plane:",
              `  url: "${cp.url}"`,
              `  subscribe_ack_timeout: ${cp.ackTimeout ?? "5s"}`,
              `  heartbeat_interval: ${cp.heartbeat ?? "30s"}`,
            ]
          : []),
        this.metricsAddress !== null ? `metrics: { listen: "${this.metricsAddress}" }` : "",
        e2e.yaml ?? "",
      ].join("\n") + "\n",
    );
  }

  /** One scrape of the metrics endpoint: `name{labels}` → value. */
  async metrics(): Promise<Map<string, number>> {
    if (this.metricsAddress === null) throw new Error("metrics are not enabled for this daemon");
    const res = await fetch(`http://${this.metricsAddress}/metrics`);
    if (!res.ok) throw new Error(`metrics: HTTP ${res.status}`);
    const out = new Map<string, number>();
    for (const line of (await res.text()).split("\n")) {
      const m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
      if (m) out.set(m[1]!, Number(m[2]));
    }
    return out;
  }

  /** Attaches an interface through the CLI; throws with the CLI's stderr on failure. */
  async attachInterface(ifname: string, metadata?: Record<string, string>): Promise<{ id: string; dnsAddress: string }> {
    const args = ["attach", "-i", ifname];
    if (metadata) args.push("--metadata", Object.entries(metadata).map(([k, v]) => `${k}=${v}`).join(","));
    const r = await this.cli(...args);
    if (r.code !== 0) throw new Error(`attach ${ifname} failed (${r.code}): ${r.stderr}`);
    return parseAttachOutput(r.stdout);
  }

  async listJson(): Promise<ListedAttachment[]> {
    const r = await this.cli("list", "--json", "--all");
    if (r.code !== 0) throw new Error(`list failed (${r.code}): ${r.stderr}`);
    return (JSON.parse(r.stdout) as { attachments?: ListedAttachment[] }).attachments ?? [];
  }

  async counters(id: string): Promise<{ allowed: number; blocked: number; dnsAllowed: number; dnsBlocked: number }> {
    const a = (await this.listJson()).find((x) => x.id === id);
    if (!a) throw new Error(`attachment ${id} is not listed`);
    return {
      allowed: Number(a.packetsAllowed ?? 0),
      blocked: Number(a.packetsBlocked ?? 0),
      dnsAllowed: Number(a.dnsQueriesAllowed ?? 0),
      dnsBlocked: Number(a.dnsQueriesBlocked ?? 0),
    };
  }

  async statusJson(): Promise<{ daemonId: string; controlPlaneState: string; attachmentCount: number }> {
    const r = await this.cli("status", "--json");
    if (r.code !== 0) throw new Error(`status failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as { daemonId: string; controlPlaneState: string; attachmentCount: number };
  }

  /** True while the daemon child has not exited. */
  alive(): boolean {
    return this.pid !== undefined && isRunning(this.pid);
  }
}

export interface ListedAttachment {
  readonly id: string;
  readonly target: string;
  readonly mode?: string;
  readonly dnsMode?: string;
  readonly dnsAddress?: string;
  readonly metadata?: Record<string, string>;
  readonly packetsAllowed?: string;
  readonly packetsBlocked?: string;
  readonly dnsQueriesAllowed?: string;
  readonly dnsQueriesBlocked?: string;
}

export function parseAttachOutput(stdout: string): { id: string; dnsAddress: string } {
  const id = /^ID: (\S+)$/m.exec(stdout)?.[1];
  const dnsAddress = /^DNS Address: (\S+)$/m.exec(stdout)?.[1];
  if (id === undefined || dnsAddress === undefined) throw new Error(`unexpected attach output: ${stdout}`);
  return { id, dnsAddress };
}

export function splitHostPort(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]+)\]?:(\d+)$/.exec(address);
  if (!m) throw new Error(`not host:port: ${address}`);
  return { host: m[1]!, port: Number(m[2]) };
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------ dnsmasq upstream in a namespace

export interface DnsRecord {
  readonly name: string;
  readonly ipv4?: string;
  readonly ipv6?: string;
  /** `name` is a CNAME for this (local) name instead of having addresses. */
  readonly cname?: string;
  /** Answer TTL in seconds (default 3600). */
  readonly ttl?: number;
}

function recordArg(r: DnsRecord): string {
  const ttl = String(r.ttl ?? 3600);
  if (r.cname !== undefined) return `--cname=${r.name},${r.cname},${ttl}`;
  return `--host-record=${[r.name, r.ipv4, r.ipv6, ttl].filter((x) => x !== undefined).join(",")}`;
}

/** A name of its own the helper asks to know dnsmasq is serving (so tests' names are never asked by us). */
const READY_NAME = "nf-ready.dnsmasq.invalid";

/**
 * Debian's dnsmasq as the test's own authoritative upstream: bound only to `address` inside
 * `ns`, no resolv.conf, no /etc/hosts, no upstream of its own (unknown names → REFUSED), every
 * query logged to a file so a test can prove a name never reached it.
 */
export class Dnsmasq {
  private constructor(
    readonly address: string,
    readonly logFile: string,
    private readonly dir: string,
    private readonly child: ChildProcess,
  ) {}

  /** `extraArgs`: more dnsmasq options (e.g. `--server=/zone/ip#port`, `--addn-hosts=FILE`, `--edns-packet-max=4096`). */
  static async start(sb: Sandbox, ns: string, address: string, records: readonly DnsRecord[], extraArgs: readonly string[] = []): Promise<Dnsmasq> {
    const dir = mkdtempSync(path.join(os.tmpdir(), "nf-dnsmasq-"));
    const logFile = path.join(dir, "queries.log");
    const argv = [
      "/usr/sbin/dnsmasq",
      "--keep-in-foreground",
      "--conf-file=/dev/null",
      "--no-resolv",
      "--no-hosts",
      "--no-poll",
      "--log-queries",
      `--log-facility=${logFile}`,
      `--listen-address=${address}`,
      "--bind-interfaces",
      "--port=53",
      "--pid-file=",
      "--user=root",
      "--cache-size=0",
      `--host-record=${READY_NAME},192.0.2.1`,
      ...records.map(recordArg),
      ...extraArgs,
    ];
    const child = sb.spawn(ns, argv);
    let stderr = "";
    child.stderr?.on("data", (b: Buffer) => (stderr += b.toString()));
    const server = new Dnsmasq(address, logFile, dir, child);
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`dnsmasq exited with ${child.exitCode}: ${stderr}`);
      const r = await dig(sb, ns, address, 53, READY_NAME, "A", { timeoutSeconds: 1 });
      return r.status === "NOERROR";
    }, "dnsmasq to answer", 15_000);
    return server;
  }

  /** Names asked of this upstream so far, lower case, in order ("query[A] name from …" lines). */
  queries(): { type: string; name: string }[] {
    const text = existsSync(this.logFile) ? readFileSync(this.logFile, "utf8") : "";
    const out: { type: string; name: string }[] = [];
    for (const m of text.matchAll(/query\[(\w+)\] (\S+) from /g)) out.push({ type: m[1]!, name: m[2]!.toLowerCase() });
    return out;
  }

  asked(name: string): boolean {
    const n = name.toLowerCase().replace(/\.$/, "");
    return this.queries().some((q) => q.name === n);
  }

  /** How many queries of `type` for `name` reached this upstream so far (no cache: each one is logged). */
  count(name: string, type: string): number {
    const n = name.toLowerCase().replace(/\.$/, "");
    return this.queries().filter((q) => q.name === n && q.type === type).length;
  }

  /** Kills dnsmasq by its PID and removes the log directory. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGKILL");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ dig from a namespace

export interface DigAnswer {
  readonly name: string;
  readonly ttl: number;
  readonly type: string;
  readonly data: string;
}

export interface DigResult {
  /** NOERROR, REFUSED, SERVFAIL, FORMERR, … or "TIMEOUT" when no answer came. */
  readonly status: string;
  readonly answers: DigAnswer[];
  readonly raw: string;
}

/** `dig @server -p port name type` inside `ns` (one try, bounded). */
export async function dig(
  sb: Sandbox, ns: string, server: string, port: number, name: string, type: string,
  opts: { tcp?: boolean; timeoutSeconds?: number } = {},
): Promise<DigResult> {
  const t = opts.timeoutSeconds ?? 3;
  const argv = ["dig", `@${server}`, "-p", String(port), "+tries=1", `+time=${t}`, "+noall", "+comments", "+answer", name, type];
  if (opts.tcp) argv.push("+tcp");
  const r = await sb.exec(ns, argv, { allowFail: true, timeoutMs: t * 1000 + 5000 });
  const raw = r.stdout + r.stderr;
  const status = /status: ([A-Z]+)/.exec(raw)?.[1] ?? "TIMEOUT";
  const answers: DigAnswer[] = [];
  for (const line of r.stdout.split("\n")) {
    if (line.startsWith(";") || line.trim() === "") continue;
    const f = line.trim().split(/\s+/);
    if (f.length >= 5 && f[2] === "IN") answers.push({ name: f[0]!.toLowerCase(), ttl: Number(f[1]), type: f[3]!, data: f[4]! });
  }
  return { status, answers, raw };
}

// ------------------------------------------------------------------ netfence-cp as a child process

/**
 * The `netfence-cp` binary (control-plane-example/dist/main.js) serving a YAML policy file,
 * pino JSON logs to a file. kill9() + start() again on the same port simulates a crash and restart.
 */
export class NetfenceCpProcess {
  readonly dir: string;
  readonly policyFile: string;
  readonly logFile: string;
  port = 0;
  private child: ChildProcess | null = null;
  private starts = 0;

  constructor(policyYaml: string) {
    ensureBuilt();
    if (!existsSync(NETFENCE_CP)) throw new Error(`${NETFENCE_CP} is missing: run \`npm run build\``);
    this.dir = mkdtempSync(path.join(os.tmpdir(), "nf-cp-"));
    this.policyFile = path.join(this.dir, "policy.yaml");
    this.logFile = path.join(this.dir, "netfence-cp.log");
    writeFileSync(this.policyFile, policyYaml);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts on 127.0.0.1:<port> (0 = any free port the first time; the same port on a restart). */
  async start(timeoutMs = 20_000): Promise<void> {
    const fd = openSync(this.logFile, "a");
    const child = spawn(process.execPath, [NETFENCE_CP, "--listen", `127.0.0.1:${this.port}`, "--policy", this.policyFile, "--log-level", "debug"], {
      stdio: ["ignore", fd, fd],
    });
    closeSync(fd);
    this.child = child;
    let serving: { port: number }[] = [];
    await waitFor(() => {
      if (child.exitCode !== null) throw new Error(`netfence-cp exited with ${child.exitCode}:\n${this.log().slice(-2000)}`);
      serving = this.logLines().filter((l) => l["msg"] === "netfence-cp serving") as { port: number }[];
      return serving.length > this.starts;
    }, "netfence-cp serving", timeoutMs);
    this.port = serving[serving.length - 1]!.port;
    this.starts++;
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, "utf8") : "";
  }

  /** Current length of the log, to read only what comes after (e.g. after a restart). */
  logOffset(): number {
    return this.log().length;
  }

  /** The JSON log lines from `since` (a logOffset()) on; non-JSON lines skipped. */
  logLines(since = 0): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of this.log().slice(since).split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a line being written right now
      }
    }
    return out;
  }

  /** Replaces the policy file atomically (write a temp file, rename over), like an editor or config management. */
  writePolicy(yaml: string): void {
    const tmp = path.join(this.dir, `.policy.${process.pid}.tmp`);
    writeFileSync(tmp, yaml);
    renameSync(tmp, this.policyFile);
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

// ------------------------------------------------------------------ small utilities

/** Runs a fixture script of test/e2e/fixtures with Node inside `ns`; returns its stdout. */
export async function runFixture(sb: Sandbox, ns: string, script: string, args: readonly string[], timeoutMs: number): Promise<string> {
  const r = await sb.exec(ns, [process.execPath, path.join(E2E_FIXTURES, script), ...args], { allowFail: true, timeoutMs });
  if (r.code !== 0) throw new Error(`${script} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * TCP-probes several destinations from `ns` at once (each its own probe process) and returns
 * `{ ip: reachable }`, so a test can state the whole expected picture in one assertion.
 */
export async function reachability(
  sb: Sandbox, ns: string, port: number, ips: readonly string[], opts: { cgroup?: string; timeoutMs?: number } = {},
): Promise<Record<string, boolean>> {
  const results = await Promise.all(ips.map((ip) => probe(sb, ns, "tcp", ip, { port, timeoutMs: opts.timeoutMs ?? 800, cgroup: opts.cgroup })));
  return Object.fromEntries(ips.map((ip, i) => [ip, results[i]!]));
}

export interface RunningPing {
  /** Echo replies seen so far (from ping's per-reply lines). */
  replies(): number;
  /** SIGINT → ping prints its statistics; resolves with them. */
  stop(): Promise<{ transmitted: number; received: number }>;
}

/**
 * A continuous ping from `ns` (every `intervalS` seconds) until stop(): the tool for "no packet
 * was dropped / none got through while X happened". One request may be in flight at stop().
 */
export function startPing(sb: Sandbox, ns: string, ip: string, intervalS = 0.01): RunningPing {
  let replies = 0;
  let output = "";
  const child = sb.spawn(ns, ["ping", "-n", "-i", String(intervalS), "-W", "1", ip], {
    onLine: (line) => {
      output += `${line}\n`;
      if (/bytes from/.test(line)) replies++;
    },
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return {
    replies: () => replies,
    async stop() {
      child.kill("SIGINT");
      await Promise.race([exited, sleep(5000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(output);
      if (!m) throw new Error(`ping ${ip} printed no statistics:\n${output.slice(-500)}`);
      return { transmitted: Number(m[1]), received: Number(m[2]) };
    },
  };
}
