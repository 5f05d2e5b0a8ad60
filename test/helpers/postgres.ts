import { execFile, spawn, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * A throwaway PostgreSQL server for one test file: initdb in a temporary directory (owned by the
 * `postgres` system user, because postgres refuses to run as root), its own free TCP port on
 * 127.0.0.1, its unix socket in the same directory, trust authentication for the one superuser
 * `netfence`. stop() ends the server (by its PID) and removes the directory.
 *
 * Needs Debian's postgresql server package (scripts/bootstrap.sh installs it).
 */
export interface TestPostgres {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  stop(): Promise<void>;
}

/** The directory holding initdb/postgres (Debian installs them under /usr/lib/postgresql/<major>/bin). */
export function postgresBinDir(): string {
  const root = "/usr/lib/postgresql";
  if (existsSync(root)) {
    const majors = readdirSync(root).filter((d) => existsSync(join(root, d, "bin", "initdb"))).sort((a, b) => Number(b) - Number(a));
    if (majors.length > 0) return join(root, majors[0]!, "bin");
  }
  throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql; scripts/bootstrap.sh does)");
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function ids(): Promise<{ uid: number; gid: number }> {
  const uid = Number((await run("id", ["-u", "postgres"])).stdout.trim());
  const gid = Number((await run("id", ["-g", "postgres"])).stdout.trim());
  return { uid, gid };
}

/** As the postgres user when we are root (postgres refuses root); as ourselves otherwise. */
function asPostgres(bin: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
}

/** `settings`: more server settings (-c key=value), e.g. shared_preload_libraries for benchmarks. */
export async function startPostgres(opts: { settings?: Readonly<Record<string, string>> } = {}): Promise<TestPostgres> {
  const bin = postgresBinDir();
  const dir = mkdtempSync(join(tmpdir(), "netfence-pg-"));
  const data = join(dir, "data");
  let child: ChildProcess | null = null;
  const cleanup = async (): Promise<void> => {
    if (child !== null && child.exitCode === null && child.signalCode === null) {
      const c = child;
      const exited = new Promise((r) => c.once("exit", r));
      c.kill("SIGINT"); // fast shutdown
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    if (process.getuid?.() === 0) {
      const { uid, gid } = await ids();
      chownSync(dir, uid, gid);
    }
    const [cmd, args] = asPostgres(join(bin, "initdb"), ["-D", data, "-U", "netfence", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
    await run(cmd, args, { timeout: 60_000 });
    const port = await freePort();
    const [pcmd, pargs] = asPostgres(join(bin, "postgres"), [
      "-D", data, "-p", String(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
      "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200",
      ...Object.entries(opts.settings ?? {}).flatMap(([k, v]) => ["-c", `${k}=${v}`]),
    ]);
    child = spawn(pcmd, pargs, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr?.on("data", (b: Buffer) => {
      if (stderr.length < 20_000) stderr += b.toString();
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`postgres exited: ${stderr}`);
      const r = await run(join(bin, "pg_isready"), ["-h", "127.0.0.1", "-p", String(port), "-U", "netfence"]).then(() => true, () => false);
      if (r) break;
      if (Date.now() > deadline) throw new Error(`postgres did not become ready: ${stderr}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    return { url: `postgres://netfence@127.0.0.1:${port}/postgres`, port, dir, stop: cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
