import { readFileSync } from "node:fs";
import path from "node:path";
import { projectRoot } from "./datapath/project-root.js";

/** The package version (package.json), shown by `netfenced --version` and GetStatus. */
export function netfenceVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(path.join(projectRoot(), "package.json"), "utf8")) as { version?: string };
    return pkg.version ?? "0.0.0";
  } catch {
    return "0.0.0";
  }
}

export { projectRoot } from "./datapath/project-root.js";
