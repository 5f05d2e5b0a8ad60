import { defineConfig } from "vitest/config";

// Kernel tests share the host's bpffs and cgroup tree; each file builds its own sandbox with
// unique names, but running files in parallel on 2 cores makes timing-based checks flaky.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The JSON report feeds scripts/test-summary.mjs (a plain "N passed, N failed" line for CI).
    reporters: ["default", ["json", { outputFile: ".cache/vitest-results.json" }]],
  },
});
