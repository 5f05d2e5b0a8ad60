#!/usr/bin/env node
import { Command } from "commander";
import pino from "pino";
import { startNetfenceCp } from "./netfence-cp.js";

// netfence-cp: a ready netfence.v1 control plane driven by a YAML policy file (hot-reloaded).
const program = new Command("netfence-cp")
  .description("netfence control plane driven by a YAML policy file")
  .requiredOption("--policy <file>", "policy file (YAML); watched and hot-reloaded")
  .option("--listen <host:port>", "address to serve ControlPlane on", "127.0.0.1:50051")
  .option("--token <token>", "require 'authorization: Bearer <token>' from daemons (default: $NETFENCE_CP_TOKEN)")
  .option("--log-level <level>", "pino log level", "info")
  .action(async (opts: { policy: string; listen: string; token?: string; logLevel: string }) => {
    const logger = pino({ level: opts.logLevel });
    try {
      const cp = await startNetfenceCp({
        listen: opts.listen,
        policyPath: opts.policy,
        token: opts.token ?? process.env["NETFENCE_CP_TOKEN"] ?? null,
        logger,
      });
      const shutdown = (): void => void cp.stop();
      process.once("SIGINT", shutdown);
      process.once("SIGTERM", shutdown);
    } catch (err) {
      process.stderr.write(`netfence-cp: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 2;
    }
  });

await program.parseAsync(process.argv);
