import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import ts from "typescript";

/**
 * The structure rules of issue 12, as a checker the suite runs on the repository
 * (structure.test.ts) and on small fixture trees (import-graph.test.ts, which shows each rule
 * failing). It reads the hand-written TypeScript of a layout, parses every file's imports with the
 * TypeScript parser (static imports, re-exports, dynamic import()), resolves each one to a file
 * (relative paths; workspace packages through their package.json `exports`, "netfence-source"
 * condition) and answers four questions: which files are too long, which files form import
 * cycles, which imports reach into another package's internals, and how big the biggest folder is.
 */

export interface Layout {
  readonly root: string;
  /** Workspace package directories (relative to root): production code, each with a package.json. */
  readonly packages: readonly string[];
  /** Other hand-written code (relative dirs): benchmarks and scripts. May import any package's modules. */
  readonly tools: readonly string[];
  /** Generated code (relative dirs), left out of every rule. */
  readonly generated: readonly string[];
}

export interface SourceFile {
  /** Relative to root, with forward slashes. */
  readonly file: string;
  readonly lines: number;
  /** The package directory (from Layout.packages) holding it, or null for tools. */
  readonly pkg: string | null;
  readonly imports: readonly Import[];
}

export interface Import {
  readonly specifier: string;
  /** Relative path of the file it resolves to, or null (external module, or unresolvable). */
  readonly target: string | null;
  /** A workspace package specifier ("@netfence/proto/parse") rather than a relative path. */
  readonly viaPackage: string | null;
  readonly typeOnly: boolean;
}

const SKIP_DIRS = new Set(["node_modules", "dist", ".git", ".cache"]);

function walk(dir: string, out: string[]): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name)) walk(full, out);
    } else if (/\.(ts|mts)$/.test(entry.name) && !entry.name.endsWith(".d.ts")) {
      out.push(full);
    }
  }
}

const rel = (root: string, file: string): string => path.relative(root, file).split(path.sep).join("/");

function countLines(text: string): number {
  if (text.length === 0) return 0;
  return text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
}

/** Every module specifier of a file, with whether the import is type-only (erased at run time). */
export function importSpecifiers(fileName: string, text: string): { specifier: string; typeOnly: boolean }[] {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const out: { specifier: string; typeOnly: boolean }[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const named = clause?.namedBindings;
      const allNamedTypes = named !== undefined && ts.isNamedImports(named) && named.elements.length > 0 && clause?.name === undefined && named.elements.every((e) => e.isTypeOnly);
      out.push({ specifier: node.moduleSpecifier.text, typeOnly: clause?.isTypeOnly === true || allNamedTypes });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push({ specifier: node.moduleSpecifier.text, typeOnly: node.isTypeOnly });
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0];
      if (arg !== undefined && ts.isStringLiteralLike(arg)) out.push({ specifier: arg.text, typeOnly: false });
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      out.push({ specifier: node.moduleReference.expression.text, typeOnly: node.isTypeOnly });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

interface PackageInfo {
  readonly dir: string;
  readonly name: string;
  readonly json: { name?: string; exports?: unknown; dependencies?: Record<string, string> };
}

function readPackages(layout: Layout): Map<string, PackageInfo> {
  const byName = new Map<string, PackageInfo>();
  for (const dir of layout.packages) {
    const json = JSON.parse(readFileSync(path.join(layout.root, dir, "package.json"), "utf8")) as PackageInfo["json"];
    if (typeof json.name !== "string") throw new Error(`${dir}/package.json has no name`);
    byName.set(json.name, { dir, name: json.name, json });
  }
  return byName;
}

/** The file an `exports` entry points at for the source condition (then types/import/default). */
function exportTarget(entry: unknown): string | null {
  if (typeof entry === "string") return entry;
  if (entry === null || typeof entry !== "object") return null;
  const conditions = entry as Record<string, unknown>;
  for (const key of ["netfence-source", "import", "default"]) {
    const t = exportTarget(conditions[key]);
    if (t !== null) return t;
  }
  return null;
}

/** Resolves "@scope/pkg/sub" through the package's `exports` (no exports field: not resolvable). */
function resolvePackageImport(layout: Layout, pkgs: Map<string, PackageInfo>, specifier: string): { pkg: PackageInfo; file: string | null } | null {
  for (const pkg of pkgs.values()) {
    if (specifier !== pkg.name && !specifier.startsWith(pkg.name + "/")) continue;
    const sub = "." + specifier.slice(pkg.name.length);
    const exportsField = pkg.json.exports;
    let entry: unknown = undefined;
    if (typeof exportsField === "string" && sub === ".") entry = exportsField;
    else if (exportsField !== null && typeof exportsField === "object") {
      const map = exportsField as Record<string, unknown>;
      entry = Object.keys(map).some((k) => k.startsWith(".")) ? map[sub] : sub === "." ? map : undefined;
    }
    const target = exportTarget(entry);
    if (target === null) return { pkg, file: null };
    const full = path.join(layout.root, pkg.dir, target);
    return { pkg, file: existsSync(full) ? rel(layout.root, full) : null };
  }
  return null;
}

function resolveRelative(root: string, fromFile: string, specifier: string): string | null {
  const base = path.resolve(path.dirname(path.join(root, fromFile)), specifier);
  const candidates = [base, base.replace(/\.(m?)js$/, ".$1ts"), base + ".ts", path.join(base, "index.ts")];
  for (const c of candidates) if (existsSync(c) && statSync(c).isFile()) return rel(root, c);
  return null;
}

/** Reads and resolves the hand-written sources of a layout. */
export function loadSources(layout: Layout): SourceFile[] {
  const pkgs = readPackages(layout);
  const files: string[] = [];
  for (const dir of [...layout.packages, ...layout.tools]) walk(path.join(layout.root, dir), files);
  const generated = layout.generated.map((g) => g.replace(/\/$/, "") + "/");
  const packageOf = (file: string): string | null =>
    [...layout.packages].sort((a, b) => b.length - a.length).find((p) => file === p || file.startsWith(p + "/")) ?? null;
  const out: SourceFile[] = [];
  for (const full of files.sort()) {
    const file = rel(layout.root, full);
    if (generated.some((g) => file.startsWith(g))) continue;
    const text = readFileSync(full, "utf8");
    const imports: Import[] = importSpecifiers(full, text).map(({ specifier, typeOnly }) => {
      if (specifier.startsWith(".")) return { specifier, target: resolveRelative(layout.root, file, specifier), viaPackage: null, typeOnly };
      const viaPkg = resolvePackageImport(layout, pkgs, specifier);
      if (viaPkg !== null) return { specifier, target: viaPkg.file, viaPackage: viaPkg.pkg.name, typeOnly };
      return { specifier, target: null, viaPackage: null, typeOnly };
    });
    out.push({ file, lines: countLines(text), pkg: packageOf(file), imports });
  }
  return out;
}

// ------------------------------------------------------------------ (a) file length

export function longFiles(sources: readonly SourceFile[], maxLines: number): { file: string; lines: number }[] {
  return sources.filter((s) => s.lines > maxLines).map((s) => ({ file: s.file, lines: s.lines })).sort((a, b) => b.lines - a.lines);
}

// ------------------------------------------------------------------ (b) import cycles

/**
 * Strongly connected components of the import graph (Tarjan) that are cycles: more than one
 * file, or a file importing itself. Each cycle is given as its files, sorted.
 */
export function importCycles(sources: readonly SourceFile[], opts: { includeTypeOnly: boolean }): string[][] {
  const known = new Set(sources.map((s) => s.file));
  const edges = new Map<string, string[]>();
  for (const s of sources) {
    edges.set(s.file, [...new Set(s.imports.filter((i) => i.target !== null && known.has(i.target) && (opts.includeTypeOnly || !i.typeOnly)).map((i) => i.target!))]);
  }
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  // Iterative Tarjan (the graph is a few hundred files, but recursion depth is not ours to choose).
  for (const start of edges.keys()) {
    if (index.has(start)) continue;
    const work: { node: string; next: number }[] = [{ node: start, next: 0 }];
    index.set(start, counter);
    low.set(start, counter++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      const succ = edges.get(frame.node)!;
      if (frame.next < succ.length) {
        const w = succ[frame.next++]!;
        if (!index.has(w)) {
          index.set(w, counter);
          low.set(w, counter++);
          stack.push(w);
          onStack.add(w);
          work.push({ node: w, next: 0 });
        } else if (onStack.has(w)) {
          low.set(frame.node, Math.min(low.get(frame.node)!, index.get(w)!));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent !== undefined) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(frame.node)!));
      if (low.get(frame.node) === index.get(frame.node)) {
        const component: string[] = [];
        for (;;) {
          const w = stack.pop()!;
          onStack.delete(w);
          component.push(w);
          if (w === frame.node) break;
        }
        if (component.length > 1 || succ.includes(frame.node)) cycles.push(component.sort());
      }
    }
  }
  return cycles.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

// ------------------------------------------------------------------ (c) package boundaries

export interface BoundaryViolation {
  readonly file: string;
  readonly specifier: string;
  readonly reason: string;
}

/**
 * Production code (a file inside a workspace package) may reach another package only by its
 * name and an entry of that package's `exports`, and only a package it declares in its
 * dependencies; a relative import may not leave its own package. Tools (bench, scripts) are
 * exempt: they drive the packages' internals on purpose, as tests do.
 */
export function boundaryViolations(layout: Layout, sources: readonly SourceFile[]): BoundaryViolation[] {
  const pkgs = readPackages(layout);
  const nameOfDir = new Map([...pkgs.values()].map((p) => [p.dir, p.name]));
  const out: BoundaryViolation[] = [];
  for (const s of sources) {
    if (s.pkg === null) continue;
    const own = [...pkgs.values()].find((p) => p.dir === s.pkg)!;
    for (const i of s.imports) {
      if (i.specifier.startsWith(".")) {
        if (i.target === null) {
          out.push({ file: s.file, specifier: i.specifier, reason: "relative import that resolves to no file" });
          continue;
        }
        if (!(i.target === s.pkg || i.target.startsWith(s.pkg + "/"))) {
          const into = [...nameOfDir.keys()].find((d) => i.target!.startsWith(d + "/"));
          out.push({
            file: s.file, specifier: i.specifier,
            reason: into !== undefined ? `reaches into ${nameOfDir.get(into)}'s internals (${i.target}); import it through its package exports` : `leaves its package for ${i.target}`,
          });
        }
      } else if (i.viaPackage !== null) {
        if (i.target === null) out.push({ file: s.file, specifier: i.specifier, reason: `not an entry of ${i.viaPackage}'s package.json exports` });
        else if (i.viaPackage !== own.name && own.json.dependencies?.[i.viaPackage] === undefined) {
          out.push({ file: s.file, specifier: i.specifier, reason: `${own.name} does not declare ${i.viaPackage} in its dependencies` });
        }
      }
    }
  }
  return out;
}

// ------------------------------------------------------------------ (d) folder sizes

/**
 * The folder a file counts towards: inside a package, its package's source root plus the first
 * directory level below it ("daemon/src/dns", "proto/src/parse"; files directly in the source root
 * form the folder "daemon/src"); for tools, the tool's directory plus one level ("bench/dns",
 * "scripts"). The source root is "<package>/src" when it exists, else the package directory.
 */
export function folderOf(layout: Layout, file: string): string {
  const parts = file.split("/");
  for (const dir of [...layout.packages, ...layout.tools].sort((a, b) => b.length - a.length)) {
    if (!file.startsWith(dir + "/")) continue;
    const base = layout.packages.includes(dir) && existsSync(path.join(layout.root, dir, "src")) && file.startsWith(dir + "/src/") ? `${dir}/src` : dir;
    const rest = file.slice(base.length + 1).split("/");
    return rest.length > 1 ? `${base}/${rest[0]}` : base;
  }
  return parts.slice(0, -1).join("/");
}

export function folderShares(layout: Layout, sources: readonly SourceFile[]): { folder: string; lines: number; share: number }[] {
  const total = sources.reduce((n, s) => n + s.lines, 0);
  const by = new Map<string, number>();
  for (const s of sources) by.set(folderOf(layout, s.file), (by.get(folderOf(layout, s.file)) ?? 0) + s.lines);
  return [...by].map(([folder, lines]) => ({ folder, lines, share: total === 0 ? 0 : lines / total })).sort((a, b) => b.lines - a.lines);
}
