import { ConfigError, loadConfig, type DaemonConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { App } from "./app.js";

/**
 * `netfenced start`: config → logger → App, then wait for SIGTERM/SIGINT and stop gracefully
 * (pinned filters keep enforcing). Returns the exit code instead of exiting: 2 for bad config,
 * 1 when the daemon cannot start, 0 after a clean stop.
 */
export async function runDaemon(opts: { configFile: string | null; socket?: string | null; env?: NodeJS.ProcessEnv }): Promise<number> {
  let config: DaemonConfig;
  try {
    config = loadConfig({ file: opts.configFile, env: opts.env ?? process.env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`netfenced: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (opts.socket) config = { ...config, socket: opts.socket };
  const logger = createLogger(config.logLevel);
  // A stray rejection somewhere must not take the daemon down (SPEC §10); it is a bug to log.
  process.on("unhandledRejection", (err) => logger.error({ err }, "unhandled promise rejection"));
  let app: App;
  try {
    app = await App.start(config, logger);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    logger.error({ err }, "netfenced failed to start");
    process.stderr.write(`netfenced: cannot start: ${message}\n`);
    return 1;
  }
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  logger.info({ signal }, "stopping");
  await app.stop();
  logger.flush();
  return 0;
}
