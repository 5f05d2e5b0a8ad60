import { afterEach, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { ControlPlaneClient } from "../../daemon/src/control-plane/connection.js";
import { FakeHost } from "../unit/control-plane/helpers/fake-host.js";

/**
 * Issue 13: a daemon whose control plane restarted 20 times in a row must come back from the
 * 21st restart within the base delay range, not at the cap (the backoff used to grow across
 * outages). The control plane is a real process — `netfence-cp` (built by bootstrap), or
 * fixtures/slow-ack-cp.mjs, which holds the stream but sends no SyncAck while it lives —
 * killed with SIGKILL and started again on the same port; the daemon side is the production
 * ControlPlaneClient with the production base and cap (200 ms, 30 s) and 500 attachments.
 * The assertions are on the delays the client chose (its log), never on wall times; the
 * reconnect latencies are printed.
 */

const CP_MAIN = join(import.meta.dirname, "../../control-plane-example/dist/main.js");
const SLOW_CP = join(import.meta.dirname, "fixtures/slow-ack-cp.mjs");
const BASE_MS = 200;
const CAP_MS = 30_000;

const children: ChildProcess[] = [];
const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(pred: () => boolean, what: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Cp { readonly child: ChildProcess; readonly out: () => string; readonly servingAt: number }

/** Starts a control-plane process and resolves once it logs that it serves. */
async function startCp(args: string[]): Promise<Cp> {
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let out = "";
  child.stdout!.on("data", (d: Buffer) => { out += d.toString(); });
  child.stderr!.on("data", (d: Buffer) => { out += d.toString(); });
  await waitFor(() => /serving/.test(out) || child.exitCode !== null, "the control plane to serve", 15_000);
  if (child.exitCode !== null) throw new Error(`control plane exited: ${out}`);
  return { child, out: () => out, servingAt: Date.now() };
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}

interface Reconnect { delayMs: number; attempt: number }

function daemonSide(port: number, resetAfterMs?: number) {
  const reconnects: Reconnect[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split("\n")) {
        if (!line.includes("reconnecting to control plane")) continue;
        const rec = JSON.parse(line) as { delayMs: number; attempt: number };
        reconnects.push({ delayMs: rec.delayMs, attempt: rec.attempt });
      }
      cb();
    },
  });
  const host = new FakeHost();
  for (let i = 0; i < 500; i++) host.add(`att-${i}`, { app: "web" });
  const client = new ControlPlaneClient({
    url: `127.0.0.1:${port}`, daemonId: "d-restarts", hostname: "h", metadata: {},
    heartbeatIntervalMs: 60_000, subscribeAckTimeoutMs: 2000, host,
    logger: pino({ level: "info" }, sink),
    backoff: { baseMs: BASE_MS, capMs: CAP_MS, ...(resetAfterMs === undefined ? {} : { resetAfterMs }) },
  });
  cleanups.push(async () => {
    client.stop();
    for (const c of children) await kill(c);
  });
  return { client, reconnects };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

describe("control-plane restarts (real control-plane processes)", () => {
  it("netfence-cp restarted 20 times: every outage starts from the base delay, reconnects are not held by grpc-js's own backoff", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nf-cp-restarts-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const policy = join(dir, "policy.yaml");
    writeFileSync(policy, "defaults: {mode: block-all}\nrules: []\n");
    const port = await freePort();
    const cpArgs = [CP_MAIN, "--policy", policy, "--listen", `127.0.0.1:${port}`, "--log-level", "info"];
    const { client, reconnects } = daemonSide(port);
    let cp = await startCp(cpArgs);
    client.start();
    await waitFor(() => client.state() === "connected", "first connect", 15_000);

    const latencies: number[] = [];
    const firstOfOutage: Reconnect[] = [];
    for (let i = 0; i <= 20; i++) {
      const before = reconnects.length;
      await kill(cp.child);
      await waitFor(() => reconnects.length > before, `the reconnect decision after kill ${i + 1}`, 15_000);
      firstOfOutage.push(reconnects[before]!);
      cp = await startCp(cpArgs);
      // Generous bound: with a backoff that never resets this is where it would hang (cap 30 s).
      await waitFor(() => client.state() === "connected", `reconnect after restart ${i + 1}`, 60_000);
      latencies.push(Date.now() - cp.servingAt);
    }
    console.log(`netfence-cp restarts: reconnect after the control plane serves, median ${median(latencies)} ms, max ${Math.max(...latencies)} ms; all: ${latencies.join(" ")}`);
    // Every outage — the 21st included — starts with a delay drawn from [0, base).
    for (const d of firstOfOutage) {
      expect(d.attempt).toBe(1);
      expect(d.delayMs).toBeLessThan(BASE_MS);
    }
    // Each outage lasted one control-plane start (≈ 0.3–1 s): far from the cap's range.
    expect(Math.max(...reconnects.map((r) => r.attempt))).toBeLessThan(8);
  }, 300_000);

  it("a control plane that holds the stream without a SyncAck, restarted 20 times: the 21st outage starts from the base, not the cap", async () => {
    const port = await freePort();
    const resetAfterMs = 1000; // production default 5 s (unit test); shorter here to keep 20 restarts brief
    const cpArgs = [SLOW_CP, "--listen", `127.0.0.1:${port}`];
    const { client, reconnects } = daemonSide(port, resetAfterMs);
    let cp = await startCp(cpArgs);
    client.start();
    for (let i = 0; i < 20; i++) {
      // The daemon's SyncRequest arrived on this incarnation; it stays up past resetAfterMs, unanswered.
      const current = cp;
      await waitFor(() => current.out().includes("sync"), `SyncRequest on incarnation ${i + 1}`, 60_000);
      await new Promise((r) => setTimeout(r, resetAfterMs + 200));
      await kill(cp.child);
      cp = await startCp(cpArgs);
    }
    const last = cp;
    await waitFor(() => last.out().includes("sync"), "SyncRequest on incarnation 21", 60_000);
    const reconnectMs = Date.now() - last.servingAt;
    await new Promise((r) => setTimeout(r, resetAfterMs + 200));
    const before = reconnects.length;
    await kill(cp.child);
    await waitFor(() => reconnects.length > before, "the reconnect decision after the 21st kill", 15_000);
    console.log(`slow-ack restarts: SyncRequest ${reconnectMs} ms after the 21st incarnation served; decision after the 21st kill: ${JSON.stringify(reconnects[before])}`);
    // Before issue 13 the counter had grown by one per restart: attempt 21+, ceiling = the cap.
    expect(reconnects[before]!.attempt).toBe(1);
    expect(reconnects[before]!.delayMs).toBeLessThan(BASE_MS);
    expect(client.state()).not.toBe("connected"); // no SyncAck ever came: never reported connected
  }, 300_000);
});
