import { readFileSync } from "node:fs";
import path from "node:path";
import { projectRoot } from "@netfence/daemon/version";

/**
 * Renders packaging/systemd/netfenced.service for one installation: ExecStart runs this
 * netfenced with the given config, and ReadWritePaths gains data_dir and the socket's directory
 * when the config puts them outside what the unit already opens (/var/lib/netfence, /run).
 */
export interface UnitOptions {
  /** Absolute argv prefix that runs netfenced, e.g. ["/usr/bin/node", "/opt/netfence/cli/dist/index.js"]. */
  readonly exec: readonly string[];
  /** Config file passed to `netfenced start --config`. */
  readonly configFile: string;
  /** From that config (null data_dir: state in memory only). */
  readonly dataDir: string | null;
  readonly socket: string;
  readonly pinRoot: string;
}

export const UNIT_TEMPLATE = (): string => path.join(projectRoot(), "packaging", "systemd", "netfenced.service");

/** The default ExecStart of this checkout: the running Node and this repository's built CLI. */
export function defaultExec(): string[] {
  return [process.execPath, path.join(projectRoot(), "cli", "dist", "index.js")];
}

export function renderUnit(opts: UnitOptions, template: string = readFileSync(UNIT_TEMPLATE(), "utf8")): string {
  if (opts.exec.length === 0 || !path.isAbsolute(opts.exec[0]!)) throw new Error("ExecStart needs an absolute executable path");
  for (const p of [...opts.exec, opts.configFile]) {
    if (/[\s"'\\%$;]/.test(p)) throw new Error(`cannot put "${p}" in ExecStart: use a path without spaces, quotes, backslashes, %, $ or ;`);
  }
  const extra: string[] = [];
  const under = (p: string, dir: string): boolean => p === dir || p.startsWith(`${dir}/`);
  if (opts.dataDir !== null && !under(path.resolve(opts.dataDir), "/var/lib/netfence")) extra.push(path.resolve(opts.dataDir));
  const socketDir = path.dirname(path.resolve(opts.socket)).replace(/^\/var\/run(?=\/|$)/, "/run");
  if (!under(socketDir, "/run")) extra.push(socketDir);
  if (!under(path.resolve(opts.pinRoot), "/sys/fs/bpf")) extra.push(path.resolve(opts.pinRoot));
  let out = template.replace(/^ExecStart=.*$/m, `ExecStart=${[...opts.exec, "start", "--config", opts.configFile].join(" ")}`);
  if (extra.length > 0) {
    // These must exist when the unit starts (systemd bind-mounts them writable).
    out = out.replace(/^(ReadWritePaths=.*)$/m, `$1 ${extra.join(" ")}`);
  }
  return out;
}
