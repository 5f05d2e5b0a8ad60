import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node, type YAMLMap } from "yaml";

/**
 * A small typed walk over a YAML document that remembers where every value is, so that a
 * validator can say `policy.yaml:12:7: message` (the standalone policy file, `netfenced apply -f`).
 * Every problem is collected (nothing throws): the whole file is validated before anything changes.
 */

export class YamlProblems {
  readonly list: string[] = [];
  constructor(
    private readonly fileName: string,
    private readonly lines: LineCounter,
  ) {}

  /** "file:line:col: message" at the start of `node` (the document start when there is none). */
  at(node: Node | null | undefined, message: string): void {
    const offset = node?.range?.[0] ?? 0;
    const { line, col } = this.lines.linePos(offset);
    this.list.push(`${this.fileName}:${line}:${col}: ${message}`);
  }

  /** "file:line:col" of a node, for messages about a rule found valid here but refused later. */
  where(node: Node | null | undefined): string {
    const { line, col } = this.lines.linePos(node?.range?.[0] ?? 0);
    return `${this.fileName}:${line}:${col}`;
  }
}

/** Parses the text; syntax errors go to the problems with their positions. */
export function parseYaml(fileName: string, text: string): { root: Node | null; problems: YamlProblems } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const problems = new YamlProblems(fileName, lines);
  for (const e of doc.errors) {
    const pos = e.linePos?.[0];
    problems.list.push(`${fileName}:${pos?.line ?? 1}:${pos?.col ?? 1}: ${e.message.split("\n")[0]}`);
  }
  return { root: doc.errors.length > 0 ? null : (doc.contents as Node | null), problems };
}

/** A mapping's entries by key, with unknown keys reported; null (and a problem) when `node` is not a mapping. */
export function mapping(node: Node | null | undefined, what: string, known: readonly string[], p: YamlProblems): Map<string, Node | null> | null {
  if (!isMap(node)) {
    p.at(node, `${what} must be a mapping`);
    return null;
  }
  const out = new Map<string, Node | null>();
  for (const pair of (node as YAMLMap<unknown, unknown>).items) {
    const key = pair.key as Node | null;
    const name = isScalar(key) ? String(key.value) : null;
    if (name === null) {
      p.at(key, `${what}: keys must be plain strings`);
      continue;
    }
    if (!known.includes(name)) {
      p.at(key, `unknown key "${name.slice(0, 40)}" in ${what} (known: ${known.join(", ")})`);
      continue;
    }
    out.set(name, (pair.value as Node | null) ?? null);
  }
  return out;
}

/** The items of a sequence; a missing value is an empty list; anything else a problem. */
export function sequence(node: Node | null | undefined, what: string, p: YamlProblems): Node[] {
  if (node === undefined || node === null || (isScalar(node) && node.value === null)) return [];
  if (!isSeq(node)) {
    p.at(node, `${what} must be a list`);
    return [];
  }
  return node.items as Node[];
}

/** A scalar string (numbers are taken as their text: `port: 22`, `user: 1000`). */
export function text(node: Node | null | undefined, what: string, p: YamlProblems): string | null {
  if (isScalar(node) && (typeof node.value === "string" || typeof node.value === "number")) return String(node.value);
  p.at(node, `${what} must be a string`);
  return null;
}

export function bool(node: Node | null | undefined, what: string, fallback: boolean, p: YamlProblems): boolean {
  if (node === undefined || node === null) return fallback;
  if (isScalar(node) && typeof node.value === "boolean") return node.value;
  p.at(node, `${what} must be true or false`);
  return fallback;
}

export function oneOf<T extends string>(node: Node | null | undefined, what: string, values: readonly T[], fallback: T, p: YamlProblems): T {
  if (node === undefined || node === null) return fallback;
  const s = text(node, what, p);
  if (s === null) return fallback;
  if ((values as readonly string[]).includes(s)) return s as T;
  p.at(node, `${what} "${s.slice(0, 40)}" is not one of ${values.join(", ")}`);
  return fallback;
}
