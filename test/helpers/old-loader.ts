import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";

const run = promisify(execFile);

/**
 * The loader child (`netfence-loader`, with the BPF objects of that commit built in) of an older
 * commit of this repository, for upgrade tests that need pins really written by an older layout:
 * `git archive <commit> bpf` into a temporary directory and `make -C bpf loader` there (the objects
 * are the commit's committed prebuilt ones; nothing is recompiled with clang). Built once per commit
 * and kept under the OS temp directory. Needs the commit in the repository's history (not a
 * shallow clone) and the loader's build tools (gcc, bpftool, libbpf-dev: scripts/bootstrap.sh).
 */
export async function oldLoader(commit: string): Promise<string> {
  const dir = path.join(tmpdir(), `netfence-loader-${commit}`);
  const binary = path.join(dir, "bpf", "loader", "netfence-loader");
  if (existsSync(binary)) return binary;
  const staging = mkdtempSync(path.join(tmpdir(), `netfence-loader-${commit}-`));
  try {
    await run("sh", ["-c", 'git -C "$0" archive "$1" bpf | tar -x -C "$2"', projectRoot(), commit, staging], { maxBuffer: 64 << 20 });
    rmSync(path.join(staging, "bpf", "build"), { recursive: true, force: true });
    await run("make", ["-C", path.join(staging, "bpf"), "loader"], { maxBuffer: 64 << 20, timeout: 300_000 });
    try {
      renameSync(staging, dir);
    } catch (e) {
      if (!existsSync(binary)) throw e; // another test process built it meanwhile: use theirs
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return binary;
}
