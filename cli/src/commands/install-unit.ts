import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Command } from "commander";
import { defaultExec, renderUnit } from "../unit-file.js";
import { EXIT } from "../output.js";
import { importPackage } from "../import-package.js";

/** `netfenced install-unit`: writes the systemd unit for this installation (see docs/operator-guide.md). */
export function installUnitCommand(): Command {
  return new Command("install-unit")
    .description("write the systemd unit netfenced.service for this installation (then: systemctl daemon-reload && systemctl enable --now netfenced)")
    .option("--dest <dir>", "directory to write netfenced.service into", "/etc/systemd/system")
    .option("--prefix <dir>", "staging root for packaging: the unit goes to <prefix>/<dest>")
    .option("-c, --config <file>", "config file the service starts with (its data_dir and socket are made writable)", "/etc/netfence/netfenced.yaml")
    .option("--exec <path>", "the netfenced executable, e.g. /usr/bin/netfenced (default: this Node and this checkout's cli/dist/index.js)")
    .option("--print", "print the unit instead of writing it")
    .action(async (opts: { dest: string; prefix?: string; config: string; exec?: string; print?: boolean }) => {
      // Loaded on demand: the config loader (and its YAML parser, ~250 kB) is not what the other
      // commands should pay for at every start-up (issue 13: CLI start-up).
      const { ConfigError, loadConfig } = await importPackage<typeof import("@netfence/daemon/config")>("@netfence/daemon/config");
      const configFile = path.resolve(opts.config);
      let unit: string;
      try {
        // A config that does not exist yet is fine (defaults); a broken one is reported.
        const config = loadConfig({ file: existsSync(configFile) ? configFile : null, env: {} });
        unit = renderUnit({ exec: opts.exec !== undefined ? [path.resolve(opts.exec)] : defaultExec(), configFile, dataDir: config.dataDir, socket: config.socket, pinRoot: config.bpf.pinRoot });
      } catch (err) {
        process.stderr.write(`Error: ${err instanceof ConfigError ? `${configFile}: ${err.message}` : (err as Error).message}\n`);
        process.exitCode = EXIT.usage;
        return;
      }
      if (opts.print) {
        process.stdout.write(unit);
        return;
      }
      const dir = opts.prefix !== undefined ? path.join(opts.prefix, opts.dest) : opts.dest;
      const file = path.join(dir, "netfenced.service");
      try {
        mkdirSync(dir, { recursive: true });
        writeFileSync(`${file}.tmp`, unit, { mode: 0o644 });
        renameSync(`${file}.tmp`, file);
      } catch (err) {
        process.stderr.write(`Error: cannot write ${file}: ${(err as Error).message}\n`);
        process.exitCode = EXIT.failed;
        return;
      }
      process.stdout.write(`Wrote ${file}\nNext: systemctl daemon-reload && systemctl enable --now netfenced\n`);
    });
}

