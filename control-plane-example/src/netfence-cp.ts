import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import pino from "pino";
import { ControlPlaneServer } from "@netfence/control-plane-sdk";
import { PolicyController, type PushSummary } from "./policy-file/policy-controller.js";
import { PolicyWatcher, loadPolicyFile } from "./policy-file/policy-watcher.js";
import type { PolicyFile } from "./policy-file/policy-file.js";

export interface NetfenceCpOptions {
  /** "host:port" to listen on (port 0 = any). */
  readonly listen: string;
  readonly policyPath: string;
  /** Require `authorization: Bearer <token>` from daemons. */
  readonly token?: string | null;
  /** PEM file paths: serve TLS with cert+key; with clientCa also require client certificates (mTLS). */
  readonly tls?: { readonly cert: string; readonly key: string; readonly clientCa?: string | null } | null;
  /** Log every attachment's counters at info when they changed (default: debug only). */
  readonly logStats?: boolean;
  /** Ask daemons for packet events (SyncAck.packet_events) and log each one at info. */
  readonly logEvents?: boolean;
  readonly debounceMs?: number;
  /** How long a pushed command waits for the daemon's CommandResult (default 10 s). */
  readonly commandTimeoutMs?: number;
  readonly logger?: pino.Logger;
  /** Observability/test hook: every hot reload's outcome. */
  readonly onReload?: (result: { ok: true; summary: PushSummary } | { ok: false; error: string }) => void;
}

export interface RunningNetfenceCp {
  readonly port: number;
  readonly server: ControlPlaneServer;
  readonly controller: PolicyController;
  stop(): Promise<void>;
}

/**
 * netfence-cp composed: load the policy (a bad file → PolicyFileError, nothing started), serve
 * ControlPlane, watch the file and push changes. Stopped in reverse order.
 */
export async function startNetfenceCp(opts: NetfenceCpOptions): Promise<RunningNetfenceCp> {
  const log = opts.logger ?? pino({ level: "info" });
  const initial = await loadPolicyFile(opts.policyPath);
  const controller = new PolicyController(initial, log.child({ component: "policy" }), { logStats: opts.logStats ?? false });
  const token = opts.token ?? null;
  const server = new ControlPlaneServer({
    hooks: controller,
    logger: log,
    authenticate: token === null ? undefined : (auth) => auth === `Bearer ${token}`,
    credentials: opts.tls ? serverCredentials(opts.tls) : undefined,
    commandTimeoutMs: opts.commandTimeoutMs,
    packetEvents: opts.logEvents ?? false,
  });
  const port = await server.listen(opts.listen);
  const watcher = new PolicyWatcher({
    path: opts.policyPath,
    debounceMs: opts.debounceMs,
    onLoad: (file: PolicyFile) => {
      log.info({ rules: file.rules.length, policy: opts.policyPath }, "policy file reloaded; pushing changes");
      void controller.reload(file, server.daemons()).then((summary) => {
        log.info(summary, "policy changes pushed");
        opts.onReload?.({ ok: true, summary });
      });
    },
    onError: (err: unknown) => {
      const message = err instanceof Error ? err.message : String(err);
      log.error({ err: message, policy: opts.policyPath }, "policy file rejected; keeping the last good policy");
      opts.onReload?.({ ok: false, error: message });
    },
  });
  watcher.start();
  log.info({ listen: opts.listen, port, policy: opts.policyPath, rules: initial.rules.length }, "netfence-cp serving");
  return {
    port,
    server,
    controller,
    async stop() {
      watcher.stop();
      await server.close();
    },
  };
}

export function serverCredentials(tls: { readonly cert: string; readonly key: string; readonly clientCa?: string | null }): grpc.ServerCredentials {
  const ca = tls.clientCa ? readFileSync(tls.clientCa) : null;
  return grpc.ServerCredentials.createSsl(ca, [{ cert_chain: readFileSync(tls.cert), private_key: readFileSync(tls.key) }], ca !== null);
}
