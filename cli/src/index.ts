#!/usr/bin/env node
import { statSync } from "node:fs";

/**
 * Start-up (issue 13, `list --all` ≤ 200 ms): the CLI runs from the one-file bundle
 * cli/dist/netfenced.bundle.js (scripts/bundle-cli.mjs) when it is at least as new as the last
 * TypeScript build of the packages it contains, else from the modules tsc emitted — so a build
 * without the bundle step never runs stale code. NETFENCE_CLI_BUNDLE=0 forces the modules (the
 * benchmark's before/after). Measured: docs/benchmarks.md, "CLI start-up".
 */
type Program = typeof import("./program.js");

function bundleIsFresh(bundle: URL): boolean {
  if (process.env.NETFENCE_CLI_BUNDLE === "0") return false;
  try {
    const built = statSync(bundle).mtimeMs;
    // tsc -b rewrites a package's .tsbuildinfo whenever it emits anything in that package.
    return ["../../cli/dist/.tsbuildinfo", "../../proto/dist/.tsbuildinfo", "../../daemon/dist/.tsbuildinfo"]
      .every((rel) => statSync(new URL(rel, import.meta.url)).mtimeMs <= built);
  } catch {
    return false;
  }
}

const bundle = new URL("./netfenced.bundle.js", import.meta.url);
const program = (bundleIsFresh(bundle) ? await import(bundle.href) : await import("./program.js")) as Program;
await program.main(process.argv);
