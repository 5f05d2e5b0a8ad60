import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { spawn } from "node:child_process";
import * as grpc from "@grpc/grpc-js";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { App } from "../../../daemon/src/app.js";
import { loadConfig } from "../../../daemon/src/config.js";
import { FakeFilter } from "../../../daemon/src/datapath/fake-filter.js";
import { DaemonClient } from "../../../cli/src/daemon-client.js";
import { main } from "../../../cli/src/program.js";
import { clearStaleSocket } from "../../../daemon/src/rpc/daemon-server.js";
import { ConnectionState } from "@netfence/proto/daemon";
import { AttachmentType, PolicyMode } from "@netfence/proto/types";
import type { NetfenceError } from "@netfence/proto/errors";
import { FakeDnsServers, fakeCgroupRoot, silentLogger } from "./fakes.js";

const CHILDREN = Array.from({ length: 260 }, (_, i) => `w${i}`);
let dir: string;
let cgroupRoot: string;
let socket: string;
let app: App;
let filter: FakeFilter;
let client: DaemonClient;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "nf-svc-"));
  cgroupRoot = fakeCgroupRoot(...CHILDREN);
  socket = path.join(dir, "run", "netfence.sock");
  const config = loadConfig({
    env: {},
    text: [
      `socket: ${socket}`,
      `data_dir: ${path.join(dir, "data")}`,
      `cgroup_root: ${cgroupRoot}`,
      "dns: { port_min: 21000, port_max: 21300, upstream: '127.0.0.1:1' }",
      "default_policy: { mode: allowlist, allow_cidrs: [10.0.0.0/8] }",
    ].join("\n"),
  });
  filter = new FakeFilter();
  app = await App.start(config, silentLogger, { filter, dnsServers: new FakeDnsServers() });
  client = new DaemonClient(socket);
});

afterAll(async () => {
  client.close();
  await app.stop();
  rmSync(dir, { recursive: true, force: true });
  rmSync(cgroupRoot, { recursive: true, force: true });
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "OK";
  } catch (err) {
    return (err as NetfenceError).code;
  }
}

describe("DaemonService over the unix socket (FakeFilter)", () => {
  it("serves on a 0660 socket", () => {
    expect(statSync(socket).mode & 0o777).toBe(0o660);
  });

  it("attach → list → detach with the local default policy", async () => {
    const res = await client.attach({ target: { case: "cgroupPath", value: "w0" }, metadata: { vm: "a" } });
    expect(res.id).toMatch(/^nf-/);
    expect(res.dnsAddress).toBe("127.0.0.1:21000");
    expect(filter.verdict(res.id, "10.1.1.1")).toBe("allow");
    expect(filter.verdict(res.id, "192.0.2.1")).toBe("block");
    filter.sendPacket(res.id, "10.1.1.1");
    filter.sendPacket(res.id, "192.0.2.1");
    filter.sendPacket(res.id, "192.0.2.2");
    const list = await client.list();
    expect(list.totalCount).toBe(1);
    const info = list.attachments[0]!;
    expect(info).toMatchObject({ id: res.id, target: "w0", type: AttachmentType.CGROUP, mode: PolicyMode.ALLOWLIST, dnsAddress: res.dnsAddress, metadata: { vm: "a" } });
    expect(info.packetsAllowed).toBe(1n);
    expect(info.packetsBlocked).toBe(2n);
    expect(info.attachedAt?.seconds).toBeGreaterThan(0n);
    const status = await client.getStatus();
    expect(status.attachmentCount).toBe(1);
    expect(status.daemonId).toMatch(/^nfd-/);
    expect(status.controlPlaneState).toBe(ConnectionState.DISCONNECTED);
    await client.detach(res.id);
    expect((await client.list()).totalCount).toBe(0);
    expect(await filter.listPinned()).toEqual([]);
  });

  it("rejects bad requests with the right status and a clear message", async () => {
    const attach = (target: Parameters<DaemonClient["attach"]>[0]) => codeOf(client.attach(target));
    expect(await attach({})).toBe("INVALID_ARGUMENT");
    expect(await attach({ target: { case: "interfaceName", value: "" } })).toBe("INVALID_ARGUMENT");
    expect(await attach({ target: { case: "cgroupPath", value: "/etc" } })).toBe("INVALID_ARGUMENT");
    expect(await attach({ target: { case: "cgroupPath", value: "../.." } })).toBe("INVALID_ARGUMENT");
    expect(await attach({ target: { case: "interfaceName", value: "lo" }, metadata: { "netfence.direction": "sideways" } })).toBe("INVALID_ARGUMENT");
    expect(await attach({ target: { case: "interfaceName", value: "nf-nonexist0" } })).toBe("NOT_FOUND");
    expect(await codeOf(client.detach("nf-000000000000"))).toBe("NOT_FOUND");
    expect(await codeOf(client.detach(""))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(client.list(-1))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(client.list(10, "garbage!"))).toBe("INVALID_ARGUMENT");
    const a = await client.attach({ target: { case: "cgroupPath", value: "w1" } });
    const err = await client.attach({ target: { case: "cgroupPath", value: path.join(cgroupRoot, "w1") } }).catch((e: unknown) => e as NetfenceError);
    expect(err).toMatchObject({ code: "ALREADY_EXISTS" });
    expect((err as Error).message).toContain(a.id);
    await client.detach(a.id);
  });

  it("survives malformed and oversized requests", async () => {
    const raw = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
    const send = (method: string, bytes: Buffer) =>
      new Promise<grpc.status>((resolve) => {
        raw.makeUnaryRequest(
          `/netfence.v1.DaemonService/${method}`,
          (b: Buffer) => b,
          (b: Buffer) => b,
          bytes,
          (err) => resolve(err?.code ?? grpc.status.OK),
        );
      });
    expect(await send("Attach", Buffer.from([0xff, 0xff, 0xff, 0xff]))).not.toBe(grpc.status.OK);
    expect(await send("Attach", Buffer.from([0x0a, 0x50, 0x01]))).not.toBe(grpc.status.OK); // truncated field
    expect(await send("List", Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0x0f]))).toBe(grpc.status.INVALID_ARGUMENT); // page_size -1
    expect(await send("NoSuchMethod", Buffer.alloc(0))).toBe(grpc.status.UNIMPLEMENTED);
    raw.close();
    expect(await codeOf(client.attach({ target: { case: "interfaceName", value: "x".repeat(5000) } }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(client.attach({ target: { case: "cgroupPath", value: "w9" }, metadata: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, "v"])) }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(client.attach({ target: { case: "cgroupPath", value: "w9\u0000/../../etc" } }))).toBe("INVALID_ARGUMENT");
    expect((await client.getStatus()).attachmentCount).toBe(0);
  });

  it("pages over 250 attachments without gaps or duplicates", async () => {
    const ids = new Set<string>();
    for (let i = 10; i < 260; i++) ids.add((await client.attach({ target: { case: "cgroupPath", value: `w${i}` } })).id);
    expect(ids.size).toBe(250);
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = await client.list(100, token);
      expect(page.totalCount).toBe(250);
      seen.push(...page.attachments.map((a) => a.id));
      token = page.nextPageToken;
      pages++;
    } while (token !== "");
    expect(pages).toBe(3);
    expect(seen).toHaveLength(250);
    expect(new Set(seen)).toEqual(ids);
    // A detach between pages does not make the next page skip or repeat anything.
    const first = await client.list(100);
    await client.detach(first.attachments[0]!.id);
    const second = await client.list(100, first.nextPageToken);
    expect(second.attachments[0]!.id).toBe(seen[100]);
    expect((await client.listAll(7)).attachments).toHaveLength(249);
    expect((await client.list(0)).attachments).toHaveLength(100);
    expect((await client.list(5000)).attachments).toHaveLength(249);
  });

  it("CLI list/status print tables, --json, and set exit codes", async () => {
    const out: string[] = [];
    const err: string[] = [];
    const o = vi.spyOn(process.stdout, "write").mockImplementation((s) => (out.push(String(s)), true));
    const e = vi.spyOn(process.stderr, "write").mockImplementation((s) => (err.push(String(s)), true));
    try {
      process.exitCode = undefined;
      await main(["node", "netfenced", "-s", socket, "list", "--page-size", "2"]);
      expect(process.exitCode).toBeUndefined();
      expect(out.join("")).toMatch(/^ID\s+TARGET\s+TYPE\s+ATTACHED VIA\s+MODE\s+DNS MODE\s+DNS ADDRESS\s+ALLOWED\s+BLOCKED\s+METADATA\nnf-[0-9a-f]{12}\s+w\d+\s+cgroup\s+cgroup-link\s+allowlist\s+disabled\s+127\.0\.0\.1:21\d{3}\s+0\s+0\s*\n/);
      expect(out.join("")).toContain("Showing 2 of 249");
      out.length = 0;
      await main(["node", "netfenced", "--socket", socket, "status", "--json"]);
      expect(JSON.parse(out.join(""))).toMatchObject({ attachmentCount: 249, controlPlaneState: "CONNECTION_STATE_DISCONNECTED" });
      out.length = 0;
      await main(["node", "netfenced", "-s", socket, "detach", "--id", "nf-nope"]);
      expect(process.exitCode).toBe(1);
      expect(err.join("")).toBe('Error: no attachment with id "nf-nope"\n');
      err.length = 0;
      process.exitCode = undefined;
      await main(["node", "netfenced", "-s", path.join(dir, "absent.sock"), "status"]);
      expect(process.exitCode).toBe(3);
      expect(err.join("")).toBe(`Error: daemon not running at ${path.join(dir, "absent.sock")}: start it with \`netfenced start\`\n`);
      err.length = 0;
      process.exitCode = undefined;
      await main(["node", "netfenced", "-s", socket, "attach", "-g", "../.."]);
      expect(process.exitCode).toBe(2);
      expect(err.join("")).toContain("outside the cgroup2 mount");
    } finally {
      o.mockRestore();
      e.mockRestore();
      process.exitCode = undefined;
    }
  });

  it("streams packet events, optionally for one attachment", async () => {
    const a = await client.attach({ target: { case: "cgroupPath", value: "w2" } });
    const b = await client.attach({ target: { case: "cgroupPath", value: "w3" } });
    const forA = client.watchEvents(a.id);
    const first = forA.next();
    await new Promise((r) => setTimeout(r, 200)); // let the stream subscribe
    filter.sendPacket(b.id, "192.0.2.7", { port: 443 });
    filter.sendPacket(a.id, "192.0.2.8", { port: 80 });
    const ev = (await Promise.race([first, new Promise<never>((_, rej) => setTimeout(() => rej(new Error("no event")), 3000))])).value!;
    expect(ev.attachmentId).toBe(a.id);
    expect(ev.dst).toBe("192.0.2.8");
    expect(ev.dstPort).toBe(80);
    expect(ev.protocol).toBe("tcp");
    await forA.return(undefined);
    expect(await codeOf(client.watchEvents("nf-unknown").next())).toBe("NOT_FOUND");
    await client.detach(a.id);
    await client.detach(b.id);
  });

  it("CLI events prints one line per blocked packet and stops after --count", async () => {
    const a = await client.attach({ target: { case: "cgroupPath", value: "w4" } });
    const out: string[] = [];
    const o = vi.spyOn(process.stdout, "write").mockImplementation((s) => (out.push(String(s)), true));
    try {
      const done = main(["node", "netfenced", "-s", socket, "events", "--id", a.id, "--count", "2"]);
      const deadline = Date.now() + 10_000;
      while (out.length < 2 && Date.now() < deadline) {
        filter.sendPacket(a.id, "192.0.2.44", { port: 8443 });
        await new Promise((r) => setTimeout(r, 50));
      }
      await done;
    } finally {
      o.mockRestore();
    }
    expect(out).toHaveLength(2);
    expect(out[0]).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT.* ${a.id} blocked tcp 10\\.0\\.0\\.2:40000 -> 192\\.0\\.2\\.44:8443 not-in-allowlist\\n$`));
    expect(process.exitCode).toBeUndefined();
    await client.detach(a.id);
  });

  it("orphan RPCs: list (none), adopt needs exactly one of id/all, unknown ids are NOT_FOUND", async () => {
    expect((await client.listOrphans()).orphans).toEqual([]);
    expect((await client.getStatus()).orphanCount).toBe(0);
    expect((await client.adoptOrphans({ all: true })).adopted).toEqual([]);
    expect(await codeOf(client.adoptOrphans({ id: "" }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(client.adoptOrphans({ id: "nf-nope" }))).toBe("NOT_FOUND");
    expect(await codeOf(client.detachOrphan("nf-nope"))).toBe("NOT_FOUND");
    expect(await codeOf(client.detachOrphan(" "))).toBe("INVALID_ARGUMENT");
  });

  it("refuses to take over a live socket, and removes a stale one", async () => {
    await expect(clearStaleSocket(socket)).rejects.toMatchObject({ code: "ALREADY_EXISTS" });
    // A crashed daemon: the socket file stays, nobody listens on it any more.
    const stale = path.join(dir, "stale.sock");
    const child = spawn(process.execPath, ["-e", "require('net').createServer().listen(process.argv[1], () => console.log('up'))", stale], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    await new Promise<void>((r) => child.stdout.once("data", () => r()));
    child.kill("SIGKILL");
    await new Promise<void>((r) => child.once("exit", () => r()));
    expect(statSync(stale).isSocket()).toBe(true);
    await clearStaleSocket(stale);
    expect(existsSync(stale)).toBe(false);
    await clearStaleSocket(stale); // absent: nothing to do
    const notSocket = path.join(dir, "plain-file");
    writeFileSync(notSocket, "x");
    await expect(clearStaleSocket(notSocket)).rejects.toMatchObject({ code: "FAILED_PRECONDITION" });
  });
});
