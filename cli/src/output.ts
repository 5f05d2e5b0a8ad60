import type { Command } from "commander";
import { isNetfenceError, type ErrorCode, type NetfenceError } from "@netfence/proto/errors";
import { DAEMON_NOT_RUNNING, DaemonClient } from "./daemon-client.js";

/** Exit codes of the CLI (documented in docs/operator-guide.md). */
export const EXIT = { ok: 0, failed: 1, usage: 2, notRunning: 3, timeout: 4 } as const;

export const DEFAULT_SOCKET = "/var/run/netfence.sock";

/** The socket from the global --socket/-s (or NETFENCE_SOCKET, or the default). */
export function socketOf(cmd: Command): string {
  const opts = cmd.optsWithGlobals<{ socket?: string }>();
  return opts.socket ?? process.env.NETFENCE_SOCKET ?? DEFAULT_SOCKET;
}

/**
 * Runs a client action: one client per command, one line on stderr and an exit code on error
 * (never a stack trace for an error the daemon reported), process.exitCode set, never exit().
 */
export async function withClient(cmd: Command, fn: (client: DaemonClient) => Promise<void>): Promise<void> {
  const client = new DaemonClient(socketOf(cmd));
  try {
    await fn(client);
  } catch (err) {
    fail(err);
  } finally {
    client.close();
  }
}

/** Exit code by the closed error code (every other code: EXIT.failed). */
const EXIT_BY_CODE: Partial<Record<ErrorCode, number>> = {
  DEADLINE_EXCEEDED: EXIT.timeout,
  INVALID_ARGUMENT: EXIT.usage,
};

/** The exit code of an error: from its code (and the client's closed not-running reason), never its text. */
export function exitCodeOf(err: NetfenceError): number {
  if (err.code === "UNAVAILABLE" && err.details.reason === DAEMON_NOT_RUNNING) return EXIT.notRunning;
  return EXIT_BY_CODE[err.code] ?? EXIT.failed;
}

export function fail(err: unknown): void {
  if (isNetfenceError(err)) {
    process.stderr.write(`Error: ${err.message}\n`);
    process.exitCode = exitCodeOf(err);
    return;
  }
  process.stderr.write(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = EXIT.failed;
}

export function usageError(message: string): void {
  process.stderr.write(`Error: ${message}\n`);
  process.exitCode = EXIT.usage;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A plain aligned table (no borders), header in upper case. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}
