#!/usr/bin/env node
// netfenced start-up variants, interleaved (issue 13): `node -e ""`, the unbundled modules
// (NETFENCE_CLI_BUNDLE=0), an ES-module bundle of the same code (built here, removed after), and
// what cli/dist/index.js runs (the CommonJS bundle with its V8 code cache). Wall time per process
// (spawn → exit), p50/p99. Run after the build, under the bench lock:
//   flock /tmp/netfence-bench.lock node bench/daemon/cli-startup.mjs 25 --version
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const dist = path.join(root, "cli/dist");
const esmProgram = path.join(dist, ".esm-bench-program.mjs");
const esmEntry = path.join(dist, ".esm-bench.mjs");
await build({
  entryPoints: [path.join(dist, "program.js")], outfile: esmProgram, bundle: true, platform: "node", format: "esm", target: "node20",
  external: ["@netfence/daemon/run", "@netfence/daemon/config"], logLevel: "error",
  banner: { js: 'import { createRequire as __cr } from "node:module"; const require = __cr(import.meta.url);' },
});
writeFileSync(esmEntry, 'const { main } = await import("./.esm-bench-program.mjs");\nawait main(process.argv);\n');
const rounds = Number(process.argv[2] ?? 20);
const args = process.argv.slice(3);
const cli = path.join(dist, "index.js");
const variants = {
  node_e: [["-e", ""], {}],
  modules: [[cli, ...args], { NETFENCE_CLI_BUNDLE: "0" }],
  esm_bundle: [[esmEntry, ...args], {}],
  cjs_codecache: [[cli, ...args], {}],
};
const ms = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
const load0 = readFileSync("/proc/loadavg", "utf8").trim();
try {
  for (let i = 0; i < rounds; i++) {
    for (const [k, [a, env]] of Object.entries(variants)) {
      const t0 = performance.now();
      const r = spawnSync(process.execPath, a, { env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
      if (r.status !== 0) throw new Error(`${k}: exit ${r.status}: ${r.stderr}`);
      ms[k].push(performance.now() - t0);
    }
  }
} finally {
  rmSync(esmProgram, { force: true });
  rmSync(esmEntry, { force: true });
}
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return Math.round(s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] * 10) / 10; };
console.log(JSON.stringify({ args, load_before: load0, load_after: readFileSync("/proc/loadavg", "utf8").trim(), ...Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, { p50: pct(v, 50), p99: pct(v, 99), n: v.length }])) }));
