#!/usr/bin/env node
// Bundles the built CLI (cli/dist/*.js and the @netfence/* modules it imports) into one CommonJS
// file, cli/dist/netfenced.bundle.cjs, which cli/dist/index.js runs (with a V8 code cache) when
// it is at least as new as the TypeScript build (see cli/src/index.ts for what each step paid). Why: `netfenced list --all` spent most of its time
// resolving and loading ~70 modules (issue 13: ≤ 200 ms; see docs/benchmarks.md, "CLI start-up").
// The daemon (`start`) and the config loader (install-unit) stay separate modules, loaded on
// demand from the normal build: they are large and the client commands never need them.
// Run after `tsc -b tsconfig.build.json` (scripts/bootstrap.sh and `npm run build` do).
import { build } from "esbuild";
import { rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const outfile = path.join(root, "cli/dist/netfenced.bundle.cjs");
rmSync(`${outfile}.cache`, { force: true }); // the code cache of the previous bundle
rmSync(path.join(root, "cli/dist/netfenced.bundle.js"), { force: true }); // the earlier ES-module form
await build({
  entryPoints: [path.join(root, "cli/dist/program.js")],
  outfile,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  external: ["@netfence/daemon/run", "@netfence/daemon/config"],
  // projectRoot() (the version) walks up from import.meta.url: the bundle's own location.
  define: { "import.meta.url": "__nfBundleUrl" },
  banner: { js: 'const __nfBundleUrl = require("node:url").pathToFileURL(__filename).href;' },
  legalComments: "none",
  logLevel: "warning",
});
