import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import path from "node:path";

// The CLI's start-up path (issue 13): cli/dist/index.js runs the one-file CommonJS bundle (with a
// V8 code cache) when it is at least as new as the TypeScript build, the modules otherwise (or
// with NETFENCE_CLI_BUNDLE=0), and both behave the same. Needs the build (scripts/bootstrap.sh);
// the bundle is made here.

const root = path.resolve(import.meta.dirname, "../../..");
const entry = path.join(root, "cli/dist/index.js");
const buildInfo = path.join(root, "cli/dist/.tsbuildinfo");
const codeCache = path.join(root, "cli/dist/netfenced.bundle.cjs.cache");

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [entry, ...args], { env: { ...process.env, NODE_DEBUG: "esm", ...env }, encoding: "utf8" });
  const loaded = r.stderr.split("\n").filter((l) => l.includes("file://")).join("\n");
  const stderr = r.stderr.split("\n").filter((l) => !l.startsWith("ESM ") && !l.startsWith("  ") && !/^[}{\]]/.test(l)).join("\n");
  // The bundle is evaluated as a vm.Script, not loaded as a module: no module of cli/dist but index.js.
  const modules = loaded.includes("cli/dist/program.js");
  return { code: r.status, stdout: r.stdout, stderr, bundle: !modules && loaded.includes("cli/dist/index.js"), modules };
}

describe("CLI bundle", () => {
  let saved: { atime: Date; mtime: Date };
  beforeAll(() => {
    const b = spawnSync(process.execPath, [path.join(root, "scripts/bundle-cli.mjs")], { encoding: "utf8" });
    expect(b.status, b.stderr).toBe(0);
    const st = statSync(buildInfo);
    saved = { atime: st.atime, mtime: st.mtime };
  });
  afterAll(() => utimesSync(buildInfo, saved.atime, saved.mtime));

  it("runs from the bundle when it is fresh, from the modules otherwise, with the same behaviour", () => {
    const missing = path.join(root, ".cache", "no-such-daemon.sock");
    const bundled = [cli(["--help"]), cli(["-s", missing, "list", "--all", "--json"]), cli(["list", "--page-size", "0"])];
    const unbundled = [cli(["--help"], { NETFENCE_CLI_BUNDLE: "0" }), cli(["-s", missing, "list", "--all", "--json"], { NETFENCE_CLI_BUNDLE: "0" }), cli(["list", "--page-size", "0"], { NETFENCE_CLI_BUNDLE: "0" })];
    for (const r of bundled) expect([r.bundle, r.modules]).toEqual([true, false]);
    for (const r of unbundled) expect([r.bundle, r.modules]).toEqual([false, true]);
    expect(bundled.map((r) => [r.code, r.stdout, r.stderr])).toEqual(unbundled.map((r) => [r.code, r.stdout, r.stderr]));
    expect(bundled.map((r) => r.code)).toEqual([0, 3, 2]);

    // The code cache: written after a run without one; a cache V8 rejects (here: garbage) is replaced.
    rmSync(codeCache, { force: true });
    expect(cli(["--version"]).code).toBe(0);
    expect(existsSync(codeCache)).toBe(true);
    writeFileSync(codeCache, "not a code cache");
    const withBadCache = cli(["--help"]);
    expect([withBadCache.code, withBadCache.stdout]).toEqual([0, bundled[0]!.stdout]);
    expect(readFileSync(codeCache, "utf8")).not.toBe("not a code cache");

    // A TypeScript build newer than the bundle: the modules run (never stale code).
    const later = new Date(Date.now() + 60_000);
    utimesSync(buildInfo, later, later);
    const stale = cli(["--help"]);
    expect([stale.bundle, stale.modules]).toEqual([false, true]);
  });
});
