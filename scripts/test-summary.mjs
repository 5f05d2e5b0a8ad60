// Prints the last vitest run as one plain line ("tests: N passed, N failed, N skipped") and
// exits non-zero if anything failed or nothing ran. Used by .ci/run after `npm test`.
import { readFileSync } from "node:fs";

const r = JSON.parse(readFileSync(new URL("../.cache/vitest-results.json", import.meta.url), "utf8"));
const skipped = r.numPendingTests + r.numTodoTests;
console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(r.numFailedTests > 0 || r.numPassedTests === 0 ? 1 : 0);
