#!/usr/bin/env node
// netfence-cp: a ready netfence.v1 control plane driven by a YAML policy file (hot-reloaded).
import { netfenceCpCommand } from "./cli.js";

await netfenceCpCommand().parseAsync(process.argv);
