import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (the directory holding netfence's package.json), from src/ or dist/. */
export function projectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, "package.json");
    if (existsSync(pkg)) {
      const { name } = JSON.parse(readFileSync(pkg, "utf8")) as { name?: string };
      if (name === "netfence") return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("cannot find the netfence project root above " + fileURLToPath(import.meta.url));
    dir = parent;
  }
}
