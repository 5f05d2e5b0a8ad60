import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { App } from "../../../daemon/src/app.js";
import { loadConfig } from "../../../daemon/src/config.js";
import { FakeBpffs, FakeFilter } from "../../../daemon/src/datapath/fake-filter.js";
import type { PortGuardSpec } from "../../../daemon/src/datapath/filter.js";
import { NetfenceError } from "@netfence/proto/errors";
import { FakeDnsServers, fakeCgroupRoot, silentLogger } from "./fakes.js";

/** App start and the DNS port guard (dns.port_guard*): installed before any DNS server, a clear start error otherwise. */
describe("App start: the DNS port guard", () => {
  const dirs: string[] = [];
  const apps: App[] = [];
  afterEach(async () => {
    for (const a of apps.splice(0)) await a.stop();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  async function start(dnsYaml: string, filter: FakeFilter): Promise<{ cgroupRoot: string }> {
    const dir = mkdtempSync(path.join(os.tmpdir(), "nf-pg-"));
    const cgroupRoot = fakeCgroupRoot("guarded");
    dirs.push(dir, cgroupRoot);
    const config = loadConfig({
      env: {},
      text: [`socket: ${path.join(dir, "s.sock")}`, `cgroup_root: ${cgroupRoot}`, `dns: { port_min: 21400, port_max: 21409${dnsYaml.replaceAll("{{cgroup_root}}", cgroupRoot)} }`].join("\n"),
    });
    apps.push(await App.start(config, silentLogger, { filter, dnsServers: new FakeDnsServers() }));
    return { cgroupRoot };
  }

  it("is on by default, over the whole cgroup2 hierarchy, for the DNS port range and the daemon's uid", async () => {
    const bpffs = new FakeBpffs();
    const { cgroupRoot } = await start("", new FakeFilter(bpffs));
    expect(bpffs.portGuard).toEqual<PortGuardSpec>({ cgroupPath: cgroupRoot, portMin: 21400, portMax: 21409, uid: process.getuid?.() ?? 0 });
  });

  it("covers dns.port_guard_cgroup when set, and is removed when dns.port_guard is false", async () => {
    const bpffs = new FakeBpffs();
    const { cgroupRoot } = await start(", port_guard_cgroup: {{cgroup_root}}/guarded", new FakeFilter(bpffs));
    expect(bpffs.portGuard?.cgroupPath).toBe(path.join(cgroupRoot, "guarded"));
    await apps.pop()!.stop();
    await start(", port_guard: false", new FakeFilter(bpffs));
    expect(bpffs.portGuard).toBeNull();
  });

  it("a guard that cannot be installed is a clear start error", async () => {
    class Refusing extends FakeFilter {
      override async setPortGuard(): Promise<void> {
        throw new NetfenceError("INVALID_ARGUMENT", '"/nope" is not a cgroup v2 directory');
      }
    }
    const err = await start("", new Refusing()).catch((e: unknown) => e as NetfenceError);
    expect(err).toMatchObject({ code: "INVALID_ARGUMENT" });
    expect((err as Error).message).toMatch(/^installing the DNS port guard \(dns\.port_guard\) on .* failed: "\/nope" is not a cgroup v2 directory; set dns\.port_guard: false/);
  });
});
