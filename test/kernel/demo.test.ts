import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { requireKernel } from "../helpers/sandbox.js";

const run = promisify(execFile);

// The README's main command must keep working: run the compiled demo and check its verdicts.
describe("npm run demo", () => {
  beforeAll(requireKernel);

  it("enforces the example policy on a namespace workload and cleans up after itself", async () => {
    const r = await run(process.execPath, [path.join(projectRoot(), "dist", "scripts", "demo.js")], { timeout: 120_000 });
    expect(r.stdout).toContain("✔ allowed     dig www.example.com");
    expect(r.stdout).toContain("✔ allowed     curl http://www.example.com/");
    expect(r.stdout).toMatch(/✘ blocked\s+dig evil\.example\.net \(not allowed\)\s+REFUSED; reached the upstream: no/);
    expect(r.stdout).toContain("✔ allowed     ping");
    expect(r.stdout).not.toContain("UNEXPECTED");
    // status and list show how the filter is attached (probed from the kernel, not assumed)
    expect(r.stdout).toMatch(/TC attach:\s+(tcx|clsact) \(probed from the kernel\)/);
    expect(r.stdout).toMatch(/ATTACHED VIA[\s\S]*\s(tcx|clsact)\s+allowlist/);
    expect(r.stdout).toContain("Demo finished: every packet went where the policy said.");
    const links = await run("ip", ["-br", "link"]);
    expect(links.stdout).not.toMatch(/nfd[0-9a-f]{4}[hib]\b/);
  }, 150_000);
});
