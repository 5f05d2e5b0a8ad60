import { ConfigError, loadConfig, type DaemonConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { App } from "./app.js";

/**
 * `netfenced start`: config → logger → App, then wait for SIGTERM/SIGINT and stop gracefully
 * (pinned filters keep enforcing). Returns the exit code — 2 for bad config, 1 when the daemon
 * cannot start (everything it took already released, the cause in one line on stderr), 0 after
 * a clean stop — and the caller exits with it: nothing may keep the process alive afterwards.
 */
export async function runDaemon(opts: {
  configFile: string | null;
  socket?: string | null;
  /** `--no-restore`: do not re-create attachments whose pins are gone (overrides config `restore`). */
  noRestore?: boolean;
  env?: NodeJS.ProcessEnv;
}): Promise<number> {
  const env = opts.env ?? process.env;
  let config: DaemonConfig;
  try {
    config = loadConfig({ file: opts.configFile, env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`netfenced: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (opts.socket) config = { ...config, socket: opts.socket };
  if (opts.noRestore) config = { ...config, restore: false };
  const logger = createLogger(config.logLevel);
  // A stray rejection somewhere must not take the daemon down (SPEC §10); it is a bug to log.
  process.on("unhandledRejection", (err) => logger.error({ err }, "unhandled promise rejection"));
  // Listening from the start: a stop requested while starting (systemctl stop during a long
  // restore) stops right after the start instead of killing the process half-way.
  let app: App | null = null;
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    const on = (signal: NodeJS.Signals): void => {
      // Synchronously, before anything else runs: a loader child killed by the same signal (sent
      // to the whole process group or unit) must not be restarted.
      app?.beginStop();
      resolve(signal);
    };
    process.once("SIGTERM", on);
    process.once("SIGINT", on);
  });
  try {
    app = await App.start(config, logger, { notifySocket: env.NOTIFY_SOCKET || null });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    logger.error({ err }, "netfenced failed to start");
    logger.flush();
    process.stderr.write(`netfenced: cannot start: ${message}\n`);
    return 1;
  }
  // A signal, or the daemon's own request (`netfenced flush` stops it once everything is removed).
  const signal = await Promise.race([signalled, app.stopRequested]);
  const started = performance.now();
  logger.info({ signal }, "stopping");
  await app.stop();
  logger.info({ signal, stopMs: Math.round(performance.now() - started) }, "stopped");
  logger.flush();
  return 0;
}
