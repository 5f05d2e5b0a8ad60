#!/usr/bin/env node
// Bundles the built CLI (cli/dist/*.js and the @netfence/* modules it imports) into one file,
// cli/dist/netfenced.bundle.js, which cli/dist/index.js loads when it is at least as new as the
// TypeScript build (see cli/src/index.ts). Why: `netfenced list --all` spent most of its time
// resolving and loading ~70 modules (issue 13: ≤ 200 ms; see docs/benchmarks.md, "CLI start-up").
// The daemon (`start`) and the config loader (install-unit) stay separate modules, loaded on
// demand from the normal build: they are large and the client commands never need them.
// Run after `tsc -b tsconfig.build.json` (scripts/bootstrap.sh and `npm run build` do).
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
await build({
  entryPoints: [path.join(root, "cli/dist/program.js")],
  outfile: path.join(root, "cli/dist/netfenced.bundle.js"),
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  external: ["@netfence/daemon/run", "@netfence/daemon/config"],
  // commander is CommonJS: its require("node:events") needs a real require in an ES module.
  banner: { js: 'import { createRequire as __nfCreateRequire } from "node:module"; const require = __nfCreateRequire(import.meta.url);' },
  legalComments: "none",
  logLevel: "warning",
});
