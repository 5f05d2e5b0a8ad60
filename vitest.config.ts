import { defineConfig } from "vitest/config";

// Kernel tests share the host's bpffs and cgroup tree; each file builds its own sandbox with
// unique names, but running files in parallel on 2 cores makes timing-based checks flaky.
// The netfence-source condition resolves @netfence/* imports to the packages' TypeScript sources
// (see the packages' `exports`), so tests run the code as it is, without a build.
export default defineConfig({
  resolve: { conditions: ["netfence-source"] },
  ssr: { resolve: { conditions: ["netfence-source"], externalConditions: ["netfence-source"] } },
  test: {
    include: ["test/**/*.test.ts"],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    server: { deps: { inline: [/\/(proto|sdk|daemon|cli|control-plane-example)\/src\//] } },
    // The JSON report feeds scripts/test-summary.mjs (a plain "N passed, N failed" line for CI).
    reporters: ["default", ["json", { outputFile: ".cache/vitest-results.json" }]],
  },
});
