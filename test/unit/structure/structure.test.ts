import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { boundaryViolations, folderShares, importCycles, loadSources, longFiles, type Layout } from "./import-graph.js";

// Issue 12, "how it is proven: the structure itself". Walks the imports of the hand-written
// TypeScript of the five workspace packages (proto/src, sdk, daemon, cli, control-plane-example)
// and of the tools (bench, scripts); proto/gen is generated and left out. Tests (test/) are not
// part of "the code" here. import-graph.test.ts shows each check failing on a small fixture tree.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

const REPO_LAYOUT: Layout = {
  root: ROOT,
  packages: ["proto", "sdk", "daemon", "cli", "control-plane-example"],
  tools: ["bench", "scripts"],
  generated: ["proto/gen"],
};

/** "no hand-written source file over ~400 lines": 400 exactly is the limit. */
const MAX_LINES = 400;
/** "biggest folder ≤ 25 % of the code" (folder: see folderOf in import-graph.ts). */
const MAX_FOLDER_SHARE = 0.25;

describe("repository structure (issue 12)", () => {
  const sources = loadSources(REPO_LAYOUT);

  it("walks a real tree: every package and tool has sources, and imports resolve to files", () => {
    for (const dir of [...REPO_LAYOUT.packages, ...REPO_LAYOUT.tools]) {
      expect(sources.some((s) => s.file.startsWith(dir + "/")), dir).toBe(true);
    }
    expect(sources.some((s) => s.file.startsWith("proto/gen/"))).toBe(false);
    const resolved = sources.flatMap((s) => s.imports).filter((i) => i.target !== null);
    expect(resolved.length).toBeGreaterThan(200);
  });

  it(`no hand-written source file over ${MAX_LINES} lines`, () => {
    const offenders = longFiles(sources, MAX_LINES);
    expect(offenders.map((o) => `${o.file}: ${o.lines} lines`), `files over ${MAX_LINES} lines`).toEqual([]);
  });

  it("no import cycle (type-only imports included: they are arrows of the design too)", () => {
    const cycles = importCycles(sources, { includeTypeOnly: true });
    expect(cycles.map((c) => c.join(" → ")), "import cycles (strongly connected components)").toEqual([]);
  });

  it("no import of another package's internals: only package exports, only declared dependencies", () => {
    const violations = boundaryViolations(REPO_LAYOUT, sources);
    expect(violations.map((v) => `${v.file}: "${v.specifier}" ${v.reason}`)).toEqual([]);
  });

  it(`the biggest folder holds at most ${MAX_FOLDER_SHARE * 100} % of the hand-written lines`, () => {
    const shares = folderShares(REPO_LAYOUT, sources);
    const biggest = shares[0]!;
    const top = shares.slice(0, 5).map((f) => `${f.folder} ${f.lines} lines (${(f.share * 100).toFixed(1)} %)`).join(", ");
    expect(biggest.share, `biggest folders: ${top}`).toBeLessThanOrEqual(MAX_FOLDER_SHARE);
  });
});
