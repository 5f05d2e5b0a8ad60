import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, rmdir } from "node:fs/promises";
import path from "node:path";

/**
 * Attachment targets of our own: cgroup v2 directories under one parent directory of ours
 * (`<cgroup2>/nfbench-<tag>/c0000…`), and veth pairs in the root namespace with unique names
 * (`nd<tag><nnn>a` / `…b`), left DOWN — nothing is routed through them, the filter only has to
 * attach. Both are removed by `remove()`, also after a partial creation.
 */

export class CgroupTargets {
  readonly parent: string;
  readonly dirs: string[] = [];
  private created = false;

  constructor(cgroupMount: string, tag: string) {
    this.parent = path.join(cgroupMount, `nfbench-${tag}`);
  }

  /** Creates `n` children (c0000 …) plus `extra` named ones; returns the children in order. */
  async create(n: number, extra: readonly string[] = []): Promise<string[]> {
    await mkdir(this.parent);
    this.created = true;
    for (let i = 0; i < n; i++) {
      const dir = path.join(this.parent, `c${String(i).padStart(4, "0")}`);
      await mkdir(dir);
      this.dirs.push(dir);
    }
    for (const name of extra) await mkdir(path.join(this.parent, name));
    return this.dirs.slice(0, n);
  }

  child(name: string): string {
    return path.join(this.parent, name);
  }

  /** Removes every child and the parent (the caller ends its processes in them first). Returns what could not be removed. */
  async remove(): Promise<string[]> {
    if (!this.created) return [];
    const left: string[] = [];
    const children = (await readdir(this.parent, { withFileTypes: true }).catch(() => [])).filter((e) => e.isDirectory()).map((e) => path.join(this.parent, e.name));
    for (const dir of [...children, this.parent]) {
      for (let attempt = 0; attempt < 20 && existsSync(dir); attempt++) {
        await rmdir(dir).catch(() => undefined);
        if (existsSync(dir)) await new Promise((r) => setTimeout(r, 50));
      }
      if (existsSync(dir)) {
        const procs = await readFile(path.join(dir, "cgroup.procs"), "utf8").catch(() => "");
        left.push(`${dir} (processes: ${procs.trim().split("\n").join(",") || "none"})`);
      }
    }
    return left;
  }
}

export class VethTargets {
  readonly names: string[] = [];

  constructor(private readonly tag: string) {
    if (!/^[a-z0-9]{1,8}$/.test(tag)) throw new Error(`veth tag "${tag}" must be 1-8 lower-case alphanumerics`);
  }

  /** Creates `n` veth pairs with one `ip -batch` process; returns the host-side names. */
  async create(n: number): Promise<string[]> {
    const lines: string[] = [];
    const names: string[] = [];
    for (let i = 0; i < n; i++) {
      const name = `nd${this.tag}${String(i).padStart(3, "0")}a`;
      if (name.length > 15) throw new Error(`interface name ${name} is longer than 15 characters`);
      names.push(name);
      lines.push(`link add ${name} type veth peer name ${name.slice(0, -1)}b`);
    }
    // Registered before creation: a partial batch is removed too.
    this.names.push(...names);
    await ipBatch(lines, false);
    return names;
  }

  async remove(): Promise<void> {
    if (this.names.length === 0) return;
    const present = this.names.filter((n) => existsSync(`/sys/class/net/${n}`));
    if (present.length > 0) await ipBatch(present.map((n) => `link del ${n}`), true);
    this.names.length = 0;
  }
}

function ipBatch(lines: readonly string[], force: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("ip", force ? ["-force", "-batch", "-"] : ["-batch", "-"], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0 || force) resolve();
      else reject(new Error(`ip -batch failed (${code}): ${stderr.slice(0, 500)}`));
    });
    child.stdin.end(lines.join("\n") + "\n");
  });
}
