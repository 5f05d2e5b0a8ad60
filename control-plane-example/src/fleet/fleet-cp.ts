import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type * as grpc from "@grpc/grpc-js";
import pino from "pino";
import postgres, { type Sql } from "postgres";
import { ControlPlaneServer } from "@netfence/control-plane-sdk";
import { PolicyController, type PushSummary } from "../policy-file/policy-controller.js";
import { AdminServer } from "./admin-server.js";
import { FleetHooks } from "./fleet-hooks.js";
import { loadPolicies } from "./fleet-store.js";
import { FleetTracker } from "./fleet-tracker.js";
import { LATEST_SCHEMA, schemaVersion } from "./migrations.js";
import { PolicySync } from "./policy-sync.js";
import { toPolicyFile } from "./policy-set.js";

export interface FleetCpOptions {
  readonly listen: string;
  readonly databaseUrl: string;
  /** Stable name of this replica (default: hostname + random suffix). */
  readonly replicaId?: string;
  /** "host:port" of the HTTP+JSON admin API (admin-server.ts); null = no admin API on this replica. */
  readonly adminListen?: string | null;
  readonly adminToken?: string | null;
  readonly token?: string | null;
  readonly credentials?: grpc.ServerCredentials;
  readonly commandTimeoutMs?: number;
  readonly pollMs?: number;
  readonly logStats?: boolean;
  readonly logger?: pino.Logger;
  readonly onReload?: (result: { revision: number; summary: PushSummary }) => void;
}

export interface RunningFleetCp {
  readonly port: number;
  readonly adminPort: number | null;
  readonly replicaId: string;
  readonly server: ControlPlaneServer;
  readonly controller: PolicyController;
  readonly sync: PolicySync;
  readonly tracker: FleetTracker;
  readonly sql: Sql;
  stop(): Promise<void>;
}

/**
 * One stateless fleet replica: the policy set read from PostgreSQL at start (a replica started
 * from nothing serves the latest committed policy), ControlPlane served with the same
 * PolicyController as the YAML mode, changes followed through LISTEN/NOTIFY, the daemons it
 * holds and their acked versions written back. Refuses to start on a database whose schema is not
 * this release's (run `netfence-cp migrate`).
 */
export async function startFleetCp(opts: FleetCpOptions): Promise<RunningFleetCp> {
  const log = opts.logger ?? pino({ level: "info" });
  const replicaId = opts.replicaId ?? `${hostname()}-${randomBytes(3).toString("hex")}`;
  const sql = postgres(opts.databaseUrl, { max: 10, onnotice: () => undefined, connection: { application_name: `netfence-cp ${replicaId}` } });
  const stops: Array<() => Promise<void>> = [() => sql.end({ timeout: 5 })];
  const stopAll = async (): Promise<void> => {
    while (stops.length > 0) await stops.pop()!().catch((err: unknown) => log.warn({ err: String(err) }, "stopping part of the replica failed"));
  };
  try {
    const schema = await schemaVersion(sql);
    if (schema !== LATEST_SCHEMA) {
      throw new Error(`database schema is at version ${schema}, this netfence-cp needs ${LATEST_SCHEMA}: run "netfence-cp migrate --database <url>" first`);
    }
    const snapshot = await loadPolicies(sql);
    const tracker = new FleetTracker(sql, replicaId, log.child({ component: "fleet-tracker" }));
    stops.push(() => tracker.stop());
    const controller = new PolicyController(toPolicyFile(snapshot.policies), log.child({ component: "policy" }), {
      logStats: opts.logStats ?? false,
      onApplied: (daemon, attachmentId, version) => {
        if (version !== null) tracker.acked(daemon.daemonId, attachmentId, version);
      },
    });
    let server: ControlPlaneServer | null = null;
    const hooks = new FleetHooks(controller, tracker, log.child({ component: "fleet" }), (id) => server?.daemon(id));
    const token = opts.token ?? null;
    server = new ControlPlaneServer({
      hooks,
      logger: log,
      authenticate: token === null ? undefined : (auth) => auth === `Bearer ${token}`,
      credentials: opts.credentials,
      commandTimeoutMs: opts.commandTimeoutMs,
    });
    const srv = server;
    const sync = new PolicySync({ sql, controller, daemons: () => srv.daemons(), log: log.child({ component: "policy-sync" }), pollMs: opts.pollMs, onReload: opts.onReload });
    sync.initial(snapshot.revision);
    await sync.start();
    stops.push(() => sync.stop());
    // Changes committed between the snapshot and LISTEN are caught here.
    await sync.request();
    const port = await srv.listen(opts.listen);
    stops.push(() => srv.close());
    await tracker.register(opts.listen.replace(/:0$/, `:${port}`));
    let adminPort: number | null = null;
    if (opts.adminListen) {
      const admin = new AdminServer({ sql, token: opts.adminToken ?? null, log: log.child({ component: "admin" }) });
      adminPort = await admin.listen(opts.adminListen);
      stops.push(() => admin.close());
    }
    log.info({ replicaId, listen: opts.listen, port, adminPort, revision: snapshot.revision, policies: snapshot.policies.length }, "netfence-cp fleet replica serving");
    return { port, adminPort, replicaId, server: srv, controller, sync, tracker, sql, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
