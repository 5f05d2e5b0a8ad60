import { defineConfig } from "vitest/config";

// Only for the portability matrix: NETFENCE_PORTABILITY=1 npx vitest run --config test/portability/vitest.config.ts
// Without NETFENCE_PORTABILITY=1 nothing is included and vitest exits non-zero ("No test files found").
export default defineConfig({
  test: {
    root: new URL("../..", import.meta.url).pathname,
    include: process.env.NETFENCE_PORTABILITY === "1" ? ["test/portability/portability.check.ts"] : [],
    testTimeout: 600_000,
    reporters: ["default"],
  },
});
