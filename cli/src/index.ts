#!/usr/bin/env node
import { readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

/**
 * Start-up (issue 13: `list --all` ≤ 200 ms; measured in docs/benchmarks.md, "CLI start-up").
 * The CLI runs from the one-file CommonJS bundle cli/dist/netfenced.bundle.cjs
 * (scripts/bundle-cli.mjs) when it is at least as new as the last TypeScript build of the
 * packages it contains, else from the modules tsc emitted — a build without the bundle step never
 * runs stale code; NETFENCE_CLI_BUNDLE=0 forces the modules. What each step paid (--version,
 * quiet machine, p50 of 25, interleaved, 2026-12-03): the modules 219 ms; one ES-module bundle
 * 144 ms (no resolution and loading of ~70 files; the config loader and its YAML parser only for
 * install-unit); this CommonJS bundle through vm.Script with a V8 code cache 140 ms (kept: small
 * but free at run time); `node -e ""` 87 ms. A CommonJS entry file would save ~13 ms more (the
 * ES-module loader's start-up: a .cjs prototype measured 116 ms against 134 ms for the ES bundle in
 * an earlier run), but cli/dist/index.js is the entry every script, unit file and test uses.
 * The code cache is written next to the bundle after a run that had none (or whose cache V8
 * rejected: another Node or bundle), when that directory is writable; without it the bundle still
 * runs, compiled.
 */
type Program = typeof import("./program.js");

const here = path.dirname(fileURLToPath(import.meta.url));
const bundle = path.join(here, "netfenced.bundle.cjs");
const codeCache = `${bundle}.cache`;

function bundleIsFresh(): boolean {
  if (process.env.NETFENCE_CLI_BUNDLE === "0") return false;
  try {
    const built = statSync(bundle).mtimeMs;
    // tsc -b rewrites a package's .tsbuildinfo whenever it emits anything in that package.
    return ["../../cli/dist/.tsbuildinfo", "../../proto/dist/.tsbuildinfo", "../../daemon/dist/.tsbuildinfo"]
      .every((rel) => statSync(path.join(here, rel)).mtimeMs <= built);
  } catch {
    return false;
  }
}

async function runBundle(): Promise<void> {
  let cached: Buffer | undefined;
  try {
    cached = readFileSync(codeCache);
  } catch {
    cached = undefined;
  }
  const source = `(function (exports, require, module, __filename, __dirname) { ${readFileSync(bundle, "utf8")}\n})`;
  const script = new vm.Script(source, { filename: bundle, ...(cached === undefined ? {} : { cachedData: cached }) });
  // A vm.Script has no dynamic import() of its own: the bundle's importPackage() uses this one.
  (globalThis as { __netfenceImport?: (s: string) => Promise<unknown> }).__netfenceImport = (s) => import(s);
  const mod = { exports: {} as Program };
  (script.runInThisContext() as (...args: unknown[]) => void)(mod.exports, createRequire(bundle), mod, bundle, here);
  await mod.exports.main(process.argv);
  if (cached === undefined || script.cachedDataRejected === true) {
    try {
      const tmp = `${codeCache}.${process.pid}`;
      writeFileSync(tmp, script.createCachedData());
      renameSync(tmp, codeCache);
    } catch {
      // not writable (an installed, read-only tree): run compiled next time too
    }
  }
}

if (bundleIsFresh()) await runBundle();
else await ((await import("./program.js")) as Program).main(process.argv);
