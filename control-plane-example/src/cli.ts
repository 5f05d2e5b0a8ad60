import { Command } from "commander";
import pino from "pino";
import { startNetfenceCp, serverCredentials, type RunningNetfenceCp } from "./netfence-cp.js";
import { addFleetCommands } from "./fleet/fleet-cli.js";
import { startFleetCp, type RunningFleetCp } from "./fleet/fleet-cp.js";

// netfence-cp: a ready netfence.v1 control plane driven by a YAML policy file (hot-reloaded), or
// with --database one replica of a fleet control plane on PostgreSQL.
interface CliOptions {
  policy?: string;
  database?: string;
  replicaId?: string;
  adminListen?: string;
  adminToken?: string;
  listen: string;
  token?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  logStats?: boolean;
  logEvents?: boolean;
  logLevel: string;
}

/**
 * The netfence-cp command. Nothing in here calls process.exit(): errors set process.exitCode and
 * print one line per problem on stderr. With `onStarted`, the caller owns the running control
 * plane (tests, embedders); without it, SIGINT/SIGTERM stop it.
 */
export function netfenceCpCommand(onStarted?: (cp: RunningNetfenceCp) => void, onFleetStarted?: (cp: RunningFleetCp) => void): Command {
  const cmd = new Command("netfence-cp")
    .description("netfence control plane driven by a YAML policy file, or (--database) a fleet replica on PostgreSQL")
    .option("--policy <file>", "policy file (YAML); watched and hot-reloaded")
    .option("--database <url>", "fleet mode: postgres://... (policies, daemons and audit in PostgreSQL; see `migrate`)")
    .option("--replica-id <id>", "fleet mode: this replica's name (default: hostname + random suffix)")
    .option("--admin-listen <host:port>", "fleet mode: serve the HTTP+JSON admin API here (default: no admin API)")
    .option("--admin-token <token>", "fleet mode: require 'Authorization: Bearer <token>' on the admin API (default: $NETFENCE_CP_ADMIN_TOKEN)")
    .option("--listen <host:port>", "address to serve ControlPlane on", "127.0.0.1:50051")
    .option("--token <token>", "require 'authorization: Bearer <token>' from daemons (default: $NETFENCE_CP_TOKEN)")
    .option("--tls-cert <file>", "serve TLS with this certificate (PEM); needs --tls-key")
    .option("--tls-key <file>", "private key (PEM) of --tls-cert")
    .option("--tls-client-ca <file>", "require daemon client certificates signed by this CA (mutual TLS)")
    .option("--log-stats", "log each attachment's packet/DNS counters when a heartbeat changes them")
    .option("--log-events", "ask daemons for their packet events (blocked, would-block, allowed flows) and log each one")
    .option("--log-level <level>", "pino log level", "info")
    .action(async (opts: CliOptions) => {
      const logger = pino({ level: opts.logLevel });
      if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) {
        process.stderr.write("netfence-cp: --tls-cert and --tls-key must be given together\n");
        process.exitCode = 2;
        return;
      }
      if ((opts.policy === undefined) === (opts.database === undefined)) {
        process.stderr.write("netfence-cp: give exactly one of --policy <file> (YAML mode) and --database <url> (fleet mode)\n");
        process.exitCode = 2;
        return;
      }
      const tls = opts.tlsCert && opts.tlsKey ? { cert: opts.tlsCert, key: opts.tlsKey, clientCa: opts.tlsClientCa ?? null } : null;
      try {
        if (opts.database !== undefined) {
          const fleet = await startFleetCp({
            listen: opts.listen,
            databaseUrl: opts.database,
            replicaId: opts.replicaId,
            adminListen: opts.adminListen ?? null,
            adminToken: opts.adminToken ?? process.env["NETFENCE_CP_ADMIN_TOKEN"] ?? null,
            token: opts.token ?? process.env["NETFENCE_CP_TOKEN"] ?? null,
            credentials: tls ? serverCredentials(tls) : undefined,
            logStats: opts.logStats ?? false,
            logger,
          });
          if (onFleetStarted) {
            onFleetStarted(fleet);
            return;
          }
          const stopFleet = (): void => void fleet.stop();
          process.once("SIGINT", stopFleet);
          process.once("SIGTERM", stopFleet);
          return;
        }
        const cp = await startNetfenceCp({
          listen: opts.listen,
          policyPath: opts.policy!,
          token: opts.token ?? process.env["NETFENCE_CP_TOKEN"] ?? null,
          tls,
          logStats: opts.logStats ?? false,
          logEvents: opts.logEvents ?? false,
          logger,
        });
        if (onStarted) {
          onStarted(cp);
          return;
        }
        const shutdown = (): void => void cp.stop();
        process.once("SIGINT", shutdown);
        process.once("SIGTERM", shutdown);
      } catch (err) {
        process.stderr.write(`netfence-cp: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = 2;
      }
    });
  addFleetCommands(cmd);
  return cmd;
}
