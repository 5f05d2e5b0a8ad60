import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { boundaryViolations, folderOf, folderShares, importCycles, importSpecifiers, loadSources, longFiles, type Layout } from "./import-graph.js";

// The structure checker of structure.test.ts on small fixture trees in a temporary directory:
// each rule is shown to fail on a tree that breaks it and to pass on the same tree fixed, so the
// repository test cannot pass by checking nothing.

let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});

/** Writes `files` (relative path → content) under a fresh temporary root. */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(path.join(os.tmpdir(), "nf-structure-"));
  dirs.push(root);
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), text);
  }
  return root;
}

const pkg = (name: string, exportsMap: Record<string, string>, dependencies: Record<string, string> = {}): string =>
  JSON.stringify({ name, type: "module", exports: Object.fromEntries(Object.entries(exportsMap).map(([k, v]) => [k, { "netfence-source": v, default: v.replace(/\.ts$/, ".js") }])), dependencies });

/** Two packages (lib exports "./parse"; app depends on lib) and a tool directory. */
function twoPackages(extra: Record<string, string> = {}): Layout {
  const root = tree({
    "lib/package.json": pkg("@t/lib", { "./parse": "./src/parse/index.ts" }),
    "lib/src/parse/index.ts": 'export { parse } from "./parse.js";\n',
    "lib/src/parse/parse.ts": "export const parse = (s: string): number => Number(s);\n",
    "lib/src/internal.ts": "export const secret = 1;\n",
    "app/package.json": pkg("@t/app", {}, { "@t/lib": "0.1.0" }),
    "app/src/main.ts": 'import { parse } from "@t/lib/parse";\nimport { helper } from "./util/helper.js";\nexport const x = parse("1") + helper();\n',
    "app/src/util/helper.ts": "export function helper(): number {\n  return 2;\n}\n",
    "tools/bench.ts": 'import { secret } from "../lib/src/internal.js";\nexport const y = secret;\n',
    "lib/gen/big_pb.ts": "export const a = 1;\n".repeat(50),
    ...extra,
  });
  return { root, packages: ["lib", "app"], tools: ["tools"], generated: ["lib/gen"] };
}

describe("structure checker on fixture trees", () => {
  it("parses static imports, type-only imports, re-exports and dynamic import()", () => {
    const text = [
      'import a from "./a.js";',
      'import type { B } from "./b.js";',
      'import { type C, type D } from "./c.js";',
      'import { type E, f } from "./e.js";',
      'export * from "./g.js";',
      'export type { H } from "./h.js";',
      'const m = await import("./m.js");',
      '// import { nope } from "./comment.js";',
      'const s = "import x from \'./string.js\'";',
    ].join("\n");
    expect(importSpecifiers("x.ts", text)).toEqual([
      { specifier: "./a.js", typeOnly: false },
      { specifier: "./b.js", typeOnly: true },
      { specifier: "./c.js", typeOnly: true },
      { specifier: "./e.js", typeOnly: false },
      { specifier: "./g.js", typeOnly: false },
      { specifier: "./h.js", typeOnly: true },
      { specifier: "./m.js", typeOnly: false },
    ]);
  });

  it("a clean tree passes every rule; generated code is left out", () => {
    const layout = twoPackages();
    const sources = loadSources(layout);
    expect(sources.map((s) => s.file)).not.toContain("lib/gen/big_pb.ts");
    const main = sources.find((s) => s.file === "app/src/main.ts")!;
    expect(main.imports.map((i) => i.target)).toEqual(["lib/src/parse/index.ts", "app/src/util/helper.ts"]);
    expect(longFiles(sources, 40)).toEqual([]);
    expect(importCycles(sources, { includeTypeOnly: true })).toEqual([]);
    // tools/bench.ts reaches into lib/src: allowed for tools
    expect(boundaryViolations(layout, sources)).toEqual([]);
  });

  it("(a) a file over the limit is listed with its length", () => {
    const layout = twoPackages({ "app/src/long.ts": "export const n = 1;\n".repeat(41) });
    const sources = loadSources(layout);
    expect(longFiles(sources, 40)).toEqual([{ file: "app/src/long.ts", lines: 41 }]);
    expect(longFiles(sources, 41)).toEqual([]);
  });

  it("(b) cycles: a two-file loop, a three-file loop, a self-import, and a loop closed only by a type import", () => {
    const layout = twoPackages({
      "app/src/a.ts": 'import { b } from "./b.js";\nexport const a = () => b;\n',
      "app/src/b.ts": 'import { a } from "./a.js";\nexport const b = () => a;\n',
      "app/src/x/one.ts": 'import "../y/two.js";\n',
      "app/src/y/two.ts": 'export * from "../z/three.js";\n',
      "app/src/z/three.ts": 'export const t = () => import("../x/one.js");\n',
      "app/src/self.ts": 'import "./self.js";\n',
      "app/src/t1.ts": 'import type { T2 } from "./t2.js";\nexport type T1 = { t: T2 };\n',
      "app/src/t2.ts": 'import { t1 } from "./t3.js";\nexport type T2 = number;\nexport const u = t1;\n',
      "app/src/t3.ts": 'import "./t1.js";\nexport const t1 = 1;\n',
    });
    const sources = loadSources(layout);
    expect(importCycles(sources, { includeTypeOnly: true })).toEqual([
      ["app/src/a.ts", "app/src/b.ts"],
      ["app/src/self.ts"],
      ["app/src/t1.ts", "app/src/t2.ts", "app/src/t3.ts"],
      ["app/src/x/one.ts", "app/src/y/two.ts", "app/src/z/three.ts"],
    ]);
    expect(importCycles(sources, { includeTypeOnly: false })).toEqual([
      ["app/src/a.ts", "app/src/b.ts"],
      ["app/src/self.ts"],
      ["app/src/x/one.ts", "app/src/y/two.ts", "app/src/z/three.ts"],
    ]);
  });

  it("(b) a long chain is no cycle (and the walk does not recurse per file)", () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 2000; i++) files[`app/src/chain/f${i}.ts`] = i < 1999 ? `import "./f${i + 1}.js";\n` : "export {};\n";
    const sources = loadSources(twoPackages(files));
    expect(importCycles(sources, { includeTypeOnly: true })).toEqual([]);
  });

  it("(c) reaching into another package's src, a non-exported subpath, an undeclared dependency, or out of the package", () => {
    const layout = twoPackages({
      "app/src/bad-relative.ts": 'import { secret } from "../../lib/src/internal.js";\nexport const s = secret;\n',
      "app/src/bad-subpath.ts": 'import { secret } from "@t/lib/internal";\nexport const s = secret;\n',
      "app/src/bad-tool.ts": 'import { y } from "../../tools/bench.js";\nexport const z = y;\n',
      "other/package.json": pkg("@t/other", { ".": "./src/index.ts" }),
      "other/src/index.ts": 'import { parse } from "@t/lib/parse";\nexport const o = parse("2");\n',
    });
    const withOther: Layout = { ...layout, packages: [...layout.packages, "other"] };
    const violations = boundaryViolations(withOther, loadSources(withOther));
    expect(violations.map((v) => [v.file, v.specifier])).toEqual([
      ["app/src/bad-relative.ts", "../../lib/src/internal.js"],
      ["app/src/bad-subpath.ts", "@t/lib/internal"],
      ["app/src/bad-tool.ts", "../../tools/bench.js"],
      ["other/src/index.ts", "@t/lib/parse"],
    ]);
    expect(violations[0]!.reason).toMatch(/reaches into @t\/lib's internals/);
    expect(violations[1]!.reason).toMatch(/not an entry of @t\/lib's package.json exports/);
    expect(violations[2]!.reason).toMatch(/leaves its package/);
    expect(violations[3]!.reason).toMatch(/@t\/other does not declare @t\/lib/);
  });

  it("(d) folders: a package's source root plus one level, a tool plus one level; the share of the biggest", () => {
    const layout = twoPackages({ "tools/deep/a/b.ts": "export const q = 1;\n".repeat(96) });
    expect(folderOf(layout, "app/src/main.ts")).toBe("app/src");
    expect(folderOf(layout, "app/src/util/helper.ts")).toBe("app/src/util");
    expect(folderOf(layout, "lib/src/parse/parse.ts")).toBe("lib/src/parse");
    expect(folderOf(layout, "tools/bench.ts")).toBe("tools");
    expect(folderOf(layout, "tools/deep/a/b.ts")).toBe("tools/deep");
    const shares = folderShares(layout, loadSources(layout));
    // 96 of 96 + 2 (lib/src/parse) + 1 (lib/src) + 3 (app/src) + 3 (app/src/util) + 2 (tools) = 107 lines
    expect(shares[0]).toEqual({ folder: "tools/deep", lines: 96, share: 96 / 107 });
    expect(shares[0]!.share).toBeGreaterThan(0.25);
    expect(shares.reduce((n, f) => n + f.lines, 0)).toBe(107);
  });
});
