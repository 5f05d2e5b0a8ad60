import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../helpers/sandbox.js";
import { waitFor } from "../helpers/daemon-harness.js";
import { E2eDaemon, reachability } from "../helpers/e2e.js";

// Issue 12, "a test packs the SDK package, installs it into an empty temporary project with only
// its declared dependencies, and runs a tiny control plane from it against the real daemon".
// `npm pack` of proto/ and sdk/ (as built by tsc -b), `npm install` of the two tarballs into an
// empty project outside the repository (the rest comes from the npm cache/registry), a check that
// nothing of the daemon, the CLI or pino came along, then a plain-JS control plane importing only
// @netfence/control-plane-sdk (fixtures/sdk-user/control-plane.mjs) against the real netfenced:
// a namespace workload's interface is attached and acked by it, commands it pushes change what
// really gets through.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const PORT = 7431;
const NPM = "npm";

interface Line { readonly event: string; readonly [key: string]: unknown }

function npm(args: readonly string[], cwd: string, timeoutMs: number): string {
  const r = spawnSync(NPM, [...args], { cwd, encoding: "utf8", timeout: timeoutMs, env: { ...process.env, npm_config_update_notifier: "false" } });
  if (r.status !== 0) throw new Error(`npm ${args.join(" ")} failed (${r.status ?? r.signal}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** Every package name under node_modules (scoped ones as "@scope/name"), nested ones included. */
function installedPackages(dir: string): Set<string> {
  const out = new Set<string>();
  const walk = (nm: string): void => {
    if (!existsSync(nm)) return;
    for (const e of readdirSync(nm, { withFileTypes: true })) {
      if (!e.isDirectory() || e.name.startsWith(".")) continue;
      if (e.name.startsWith("@")) {
        for (const s of readdirSync(path.join(nm, e.name), { withFileTypes: true })) {
          if (!s.isDirectory()) continue;
          out.add(`${e.name}/${s.name}`);
          walk(path.join(nm, e.name, s.name, "node_modules"));
        }
      } else {
        out.add(e.name);
        walk(path.join(nm, e.name, "node_modules"));
      }
    }
  };
  walk(path.join(dir, "node_modules"));
  return out;
}

describe("the control-plane SDK, packed and installed alone, drives the real daemon", () => {
  let tmp = "";
  let project = "";
  let sb: Sandbox;
  let net: SandboxNetwork;
  let daemon: E2eDaemon;
  let cp: ChildProcess | null = null;
  const lines: Line[] = [];
  let s: readonly string[];

  const cpEvents = (event: string): Line[] => lines.filter((l) => l.event === event);
  const push = async (attachmentId: string, command: Record<string, unknown>): Promise<Line> => {
    const seen = cpEvents("outcome").length + cpEvents("error").length;
    cp!.stdin!.write(JSON.stringify({ attachmentId, command }) + "\n");
    await waitFor(() => cpEvents("outcome").length + cpEvents("error").length > seen, `the outcome of ${String(command["kind"])}`, 15_000);
    return [...cpEvents("outcome"), ...cpEvents("error")].at(-1)!;
  };

  beforeAll(async () => {
    await requireKernel();
    tmp = mkdtempSync(path.join(os.tmpdir(), "nf-sdk-pack-"));
    // The packages as they would be published: built by tsc -b into their own dist/.
    const build = spawnSync(path.join(ROOT, "node_modules", ".bin", "tsc"), ["-b", path.join(ROOT, "tsconfig.build.json")], { encoding: "utf8", timeout: 240_000 });
    if (build.status !== 0) throw new Error(`tsc -b failed: ${build.stdout}${build.stderr}`);
    const tarballs = ["proto", "sdk"].map((dir) => {
      const packed = JSON.parse(npm(["pack", "--json", "--pack-destination", tmp], path.join(ROOT, dir), 120_000)) as { filename: string }[];
      return path.join(tmp, packed[0]!.filename);
    });
    project = path.join(tmp, "user-control-plane");
    mkdirSync(project);
    writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "user-control-plane", version: "1.0.0", private: true, type: "module" }, null, 2));
    // Only the two tarballs; their declared dependencies come from the npm cache or the registry.
    npm(["install", "--no-audit", "--no-fund", "--prefer-offline", "--no-package-lock", ...tarballs], project, 240_000);
    copyFileSync(path.join(ROOT, "test", "e2e", "fixtures", "sdk-user", "control-plane.mjs"), path.join(project, "control-plane.mjs"));

    sb = await Sandbox.create("nfpk");
    net = await sb.network();
    s = net.serverIp4;
    await sb.echoServer(net.serverNs, PORT);
  }, 600_000);

  afterAll(async () => {
    await daemon?.cleanup();
    if (cp?.pid !== undefined && cp.exitCode === null && cp.signalCode === null) {
      const exited = new Promise<void>((r) => cp!.once("exit", () => r()));
      cp.kill("SIGTERM");
      const timer = setTimeout(() => cp!.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(timer);
    }
    await sb?.cleanup();
    if (tmp !== "") rmSync(tmp, { recursive: true, force: true });
  });

  it("the install holds the SDK, the contract and their declared dependencies, and nothing of the daemon, the CLI or pino", () => {
    const installed = installedPackages(project);
    for (const name of ["@netfence/control-plane-sdk", "@netfence/proto", "@grpc/grpc-js", "@bufbuild/protobuf"]) expect(installed, name).toContain(name);
    for (const name of ["@netfence/daemon", "@netfence/cli", "netfence-cp", "pino", "prom-client", "commander", "yaml", "dns-packet"]) expect(installed, name).not.toContain(name);
    // The SDK was installed from its tarball (not linked to the repository's workspace).
    const sdkJson = JSON.parse(readFileSync(path.join(project, "node_modules", "@netfence", "control-plane-sdk", "package.json"), "utf8")) as { name: string };
    expect(sdkJson.name).toBe("@netfence/control-plane-sdk");
    expect(existsSync(path.join(project, "node_modules", "@netfence", "control-plane-sdk", "dist", "index.js"))).toBe(true);
    expect(readdirSync(path.join(project, "node_modules", "@netfence")).sort()).toEqual(["control-plane-sdk", "proto"]);
  });

  it("a plain-JS control plane from that project acks an attach with its policy and its commands change real traffic", async () => {
    cp = spawn(process.execPath, [path.join(project, "control-plane.mjs"), s[0]!], { cwd: project, stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    let partial = "";
    cp.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    cp.stdout!.on("data", (c: Buffer) => {
      const parts = (partial + c.toString()).split("\n");
      partial = parts.pop() ?? "";
      for (const p of parts) if (p.trim() !== "") lines.push(JSON.parse(p) as Line);
    });
    await waitFor(() => cpEvents("listening").length === 1 || cp!.exitCode !== null, "the control plane to listen", 20_000);
    expect(cp.exitCode, stderr).toBe(null);
    const port = Number(cpEvents("listening")[0]!["port"]);

    daemon = new E2eDaemon({
      pinRoot: await sb.pinRoot(),
      dns: { listenAddr: "127.0.0.1", upstream: "127.0.0.1:9" },
      controlPlane: { url: `127.0.0.1:${port}`, ackTimeout: "5s", heartbeat: "1s" },
    });
    await daemon.start();
    await waitFor(() => cpEvents("synced").length >= 1, "the daemon's SyncRequest at the user's control plane", 20_000);

    // Before the attach nothing filters the workload.
    expect(await reachability(sb, net.workloadNs, PORT, [s[0]!, s[1]!])).toEqual({ [s[0]!]: true, [s[1]!]: true });
    const attached = await daemon.attachInterface(net.hostIf);
    expect(cpEvents("subscribed").map((l) => l["attachmentId"])).toEqual([attached.id]);
    // Attach returned after the SubscribedAck: the control plane's allowlist (s0 only) is enforced.
    expect(await reachability(sb, net.workloadNs, PORT, [s[0]!, s[1]!, s[2]!])).toEqual({ [s[0]!]: true, [s[1]!]: false, [s[2]!]: false });
    expect((await daemon.listJson()).map((a) => [a.id, a.mode])).toEqual([[attached.id, "POLICY_MODE_ALLOWLIST"]]);

    // A command from the user's control plane opens s1…
    expect(await push(attached.id, { kind: "allow-cidr", cidr: `${s[1]}/32` })).toMatchObject({ event: "outcome", kind: "allow-cidr", applied: true });
    expect(await reachability(sb, net.workloadNs, PORT, [s[0]!, s[1]!, s[2]!])).toEqual({ [s[0]!]: true, [s[1]!]: true, [s[2]!]: false });
    // …a bad one is rejected and changes nothing…
    expect(await push(attached.id, { kind: "allow-cidr", cidr: "10.0.0.300/32" })).toMatchObject({ event: "outcome", applied: false });
    expect(await reachability(sb, net.workloadNs, PORT, [s[0]!, s[1]!, s[2]!])).toEqual({ [s[0]!]: true, [s[1]!]: true, [s[2]!]: false });
    // …and block-all closes everything.
    expect(await push(attached.id, { kind: "set-mode", mode: "block-all" })).toMatchObject({ event: "outcome", kind: "set-mode", applied: true });
    expect(await probe(sb, net.workloadNs, "tcp", s[0]!, { port: PORT, timeoutMs: 800 })).toBe(false);
    expect(await probe(sb, net.workloadNs, "tcp", s[1]!, { port: PORT, timeoutMs: 800 })).toBe(false);
    const counters = await daemon.counters(attached.id);
    expect(counters.allowed).toBeGreaterThan(0);
    expect(counters.blocked).toBeGreaterThan(0);
    expect(stderr).toBe("");
  });
});
