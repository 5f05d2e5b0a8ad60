import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { LAYOUT, MODE_CODES, Op, REASONS, PROTOCOL_VERSION, LAYOUT_VERSION } from "../../../daemon/src/datapath/wire-format.js";
import { projectRoot } from "../../../daemon/src/datapath/project-root.js";

/**
 * wire-format.ts mirrors bpf/include/netfence.h by hand. This test compiles a C probe against the
 * real header and compares every size and offset the TypeScript side relies on.
 */
describe("wire-format.ts matches bpf/include/netfence.h", () => {
  const header = path.join(projectRoot(), "bpf", "include");
  const fields: Array<[string, string]> = [];
  for (const [struct, layout] of Object.entries(LAYOUT)) {
    for (const field of Object.keys(layout)) fields.push([struct, field]);
  }
  const prints = fields
    .map(([s, f]) => (f === "size" ? `printf("%s.size=%zu\\n", "${s}", sizeof(struct ${s}));` : `printf("%s.%s=%zu\\n", "${s}", "${f}", offsetof(struct ${s}, ${f}));`))
    .join("\n");
  const consts = [
    "NF_PROTOCOL_VERSION", "NF_LAYOUT_VERSION", "NF_OP_HELLO", "NF_OP_LOAD", "NF_OP_LINK", "NF_OP_UNLOAD", "NF_OP_ADOPT", "NF_OP_REPLACE",
    "NF_OP_UPSERT", "NF_OP_DELETE", "NF_OP_SET_MODE", "NF_OP_COUNTERS", "NF_OP_PROTECTED", "NF_OP_EVENTS",
    "NF_OP_NOTIFY", "NF_OP_RELINK", "NF_OP_DUMP",
    "NF_MODE_DISABLED", "NF_MODE_ALLOWLIST", "NF_MODE_DENYLIST", "NF_MODE_BLOCK_ALL", "NF_REASON_MALFORMED", "NF_CNT_MAX",
  ].map((c) => `printf("${c}=%d\\n", (int)${c});`).join("\n");
  const src = `#include <stdio.h>\n#include <stddef.h>\n#include "netfence.h"\nint main(void){\n${prints}\n${consts}\nreturn 0;}\n`;

  const dir = mkdtempSync(path.join(tmpdir(), "nf-layout-"));
  let out: Map<string, number>;
  try {
    writeFileSync(path.join(dir, "probe.c"), src);
    execFileSync("cc", ["-I", header, "-o", path.join(dir, "probe"), path.join(dir, "probe.c")]);
    out = new Map(execFileSync(path.join(dir, "probe")).toString().trim().split("\n").map((l) => {
      const [k, v] = l.split("=");
      return [k!, Number(v)];
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  it.each(fields)("%s.%s", (struct, field) => {
    expect(out.get(`${struct}.${field}`)).toBe((LAYOUT as Record<string, Record<string, number>>)[struct]![field]);
  });

  it("constants and op codes", () => {
    expect(out.get("NF_PROTOCOL_VERSION")).toBe(PROTOCOL_VERSION);
    expect(out.get("NF_LAYOUT_VERSION")).toBe(LAYOUT_VERSION);
    for (const [name, code] of Object.entries(Op)) expect(out.get(`NF_OP_${name}`), name).toBe(code);
    expect(out.get("NF_MODE_DISABLED")).toBe(MODE_CODES.disabled);
    expect(out.get("NF_MODE_ALLOWLIST")).toBe(MODE_CODES.allowlist);
    expect(out.get("NF_MODE_DENYLIST")).toBe(MODE_CODES.denylist);
    expect(out.get("NF_MODE_BLOCK_ALL")).toBe(MODE_CODES["block-all"]);
    expect(REASONS[out.get("NF_REASON_MALFORMED")!]).toBe("malformed");
    expect(out.get("NF_CNT_MAX")).toBe(4);
  });
});
