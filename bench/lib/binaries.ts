import path from "node:path";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";

/** The built executables the benchmarks run as child processes (the production binaries). */
export const NETFENCED = path.join(projectRoot(), "dist", "cli", "src", "index.js");
export const NETFENCE_CP = path.join(projectRoot(), "dist", "control-plane-example", "src", "main.js");
