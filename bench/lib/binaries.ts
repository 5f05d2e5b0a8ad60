import path from "node:path";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";

/** The built executables the benchmarks run as child processes (the production binaries). */
export const NETFENCED = path.join(projectRoot(), "cli", "dist", "index.js");
export const NETFENCE_CP = path.join(projectRoot(), "control-plane-example", "dist", "main.js");
