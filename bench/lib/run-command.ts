import { spawn } from "node:child_process";

/**
 * Runs a short command (ip, nft, mount, a `--version`) to completion, bounded at 30 s, and returns
 * its stdout; a non-zero exit is an error with its stderr unless `allowFail`.
 */
export async function run(cmd: string, args: string[], allowFail = false): Promise<string> {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr.on("data", (c: Buffer) => (err += c.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  clearTimeout(timer);
  if (code !== 0 && !allowFail) throw new Error(`${cmd} ${args.join(" ")} failed (${code}): ${err.trim()}`);
  return out;
}
