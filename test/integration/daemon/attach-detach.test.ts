import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { probe, requireKernel, Sandbox, cgroup2Mount, type SandboxNetwork } from "../../helpers/sandbox.js";
import { DaemonProcess, runCli } from "../../helpers/daemon-harness.js";
import { DaemonClient } from "../../../cli/src/daemon-client.js";
import type { NetfenceError } from "@netfence/proto/errors";

// The real daemon process, the real CLI binary and the real kernel: attach/list/detach of an
// interface and a cgroup on the local default policy, with traffic checks, and every bad input.

const PORT = 7311;

describe("netfenced attach / list / detach (real kernel, real CLI)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let daemon: DaemonProcess;
  let pinRoot: string;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfat");
    net = await sb.network();
    pinRoot = await sb.pinRoot();
    await sb.echoServer(net.serverNs, PORT);
    daemon = new DaemonProcess({
      pinRoot,
      yaml: [
        "default_policy:",
        "  mode: allowlist",
        `  allow_cidrs: ["${net.serverIp4[0]}/32", "${net.serverIp6[0]}/128"]`,
        "metadata: { rack: r1 }",
      ].join("\n"),
    });
    await daemon.start();
  });

  afterAll(async () => {
    await daemon?.cleanup();
    await sb?.cleanup();
  });

  const reach = (ip: string, cgroup?: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800, cgroup });

  it("status reports the daemon", async () => {
    const r = await daemon.cli("status");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Version:\s+\d+\.\d+\.\d+/);
    expect(r.stdout).toMatch(/Daemon ID:\s+nfd-[0-9a-f]+/);
    expect(r.stdout).toContain("Attachments:   0");
    expect(r.stdout).toMatch(/TC attach:\s+(tcx|clsact) /);
    const j = JSON.parse((await daemon.cli("status", "--json")).stdout) as { daemonId: string; attachmentCount: number };
    expect(j.attachmentCount).toBe(0);
    expect(statSync(daemon.socket).mode & 0o777).toBe(0o660);
  });

  it("attaches to an interface, enforces the default policy, lists it, and detaches", async () => {
    expect(await reach(net.serverIp4[1]!)).toBe(true);
    const r = await daemon.cli("attach", "-i", net.hostIf, "--metadata", "vm=abc,tenant=t1");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const id = /^ID: (nf-[0-9a-f]{12})$/m.exec(r.stdout)?.[1];
    const dns = /^DNS Address: (127\.0\.0\.1:\d+)$/m.exec(r.stdout)?.[1];
    expect(id).toBeDefined();
    expect(dns).toBe(`127.0.0.1:${daemon.portMin}`);
    expect(existsSync(path.join(pinRoot, id!))).toBe(true);

    expect(await reach(net.serverIp4[0]!)).toBe(true);
    expect(await reach(net.serverIp6[0]!)).toBe(true);
    expect(await reach(net.serverIp4[1]!)).toBe(false);
    expect(await reach(net.serverIp6[1]!)).toBe(false);

    const table = await daemon.cli("list");
    expect(table.code).toBe(0);
    const row = table.stdout.split("\n").find((l) => l.startsWith(id!))!;
    expect(row).toMatch(new RegExp(`^${id}\\s+${net.hostIf}\\s+interface\\s+(?:tcx|clsact)\\s+allowlist\\s+disabled\\s+${dns!.replace(/\./g, "\\.")}\\s+\\d+\\s+[1-9]\\d*\\s+tenant=t1,vm=abc$`));
    const json = JSON.parse((await daemon.cli("list", "--json")).stdout) as { attachments: { id: string; type: string; mode: string; packetsBlocked?: string; attachedAt: string }[]; totalCount: number };
    expect(json.totalCount).toBe(1);
    expect(json.attachments[0]).toMatchObject({ id, type: "ATTACHMENT_TYPE_TC", mode: "POLICY_MODE_ALLOWLIST" });
    expect(Number(json.attachments[0]!.packetsBlocked)).toBeGreaterThan(0);
    expect(Date.parse(json.attachments[0]!.attachedAt)).toBeGreaterThan(Date.now() - 120_000);

    const d = await daemon.cli("detach", "--id", id!);
    expect(d.code).toBe(0);
    expect(d.stdout).toBe(`Detached ${id}\n`);
    expect(existsSync(path.join(pinRoot, id!))).toBe(false);
    expect(await reach(net.serverIp4[1]!)).toBe(true);
    expect((await daemon.cli("list")).stdout).toBe("No attachments.\n");
  });

  it("attaches to a cgroup (absolute and relative paths) and enforces for its processes only", async () => {
    const cg = await sb.cgroup();
    const rel = path.relative(cgroup2Mount(), cg);
    const r = await daemon.cli("attach", "--cgroup", rel, "--json");
    expect(r.code).toBe(0);
    const { id } = JSON.parse(r.stdout) as { id: string; dnsAddress: string };
    expect(await reach(net.serverIp4[0]!, cg)).toBe(true);
    expect(await reach(net.serverIp4[2]!, cg)).toBe(false);
    expect(await reach(net.serverIp4[2]!)).toBe(true); // not in the cgroup: unaffected
    const again = await daemon.cli("attach", "-g", cg);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`Error: ${cg} is already attached as ${id}\n`);
    const row = (await daemon.cli("list")).stdout.split("\n").find((l) => l.startsWith(id))!;
    expect(row).toMatch(/\s+cgroup\s+cgroup-(link|attach)\s+allowlist\s+/);
    expect((await daemon.cli("detach", "--id", id)).code).toBe(0);
    expect(await reach(net.serverIp4[2]!, cg)).toBe(true);
  });

  it("rejects bad inputs with one line on stderr and a non-zero exit code", async () => {
    const cases: [string[], number, RegExp][] = [
      [["attach"], 2, /^Error: attach needs exactly one of --interface\/-i NAME or --cgroup\/-g PATH\n$/],
      [["attach", "-i", "x", "-g", "y"], 2, /exactly one/],
      [["attach", "-g", "/etc"], 2, /^Error: cgroup path "\/etc" is outside the cgroup2 mount .+\n$/],
      [["attach", "-g", "../.."], 2, /^Error: cgroup path "\.\.\/\.\." is outside the cgroup2 mount .+\n$/],
      [["attach", "-g", "nftest-does-not-exist"], 1, /^Error: cgroup "nftest-does-not-exist" does not exist\n$/],
      [["attach", "-i", "nfnoexist0"], 1, /^Error: interface "nfnoexist0" does not exist\n$/],
      [["attach", "-i", "../../etc"], 2, /^Error: invalid interface name/],
      [["attach", "-i", net.hostIf, "--direction", "sideways"], 2, /sideways/],
      [["attach", "-i", net.hostIf, "--metadata", "novalue"], 2, /not key=value/],
      [["detach", "--id", "nf-000000000000"], 1, /^Error: no attachment with id "nf-000000000000"\n$/],
      [["detach"], 2, /^Error: detach needs exactly one of --id ID or --orphan ID\n$/],
      [["list", "--page-size", "0"], 2, /must be an integer/],
      [["frobnicate"], 2, /unknown command/],
    ];
    for (const [args, code, stderr] of cases) {
      const r = await daemon.cli(...args);
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.stderr).toMatch(stderr);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack traces
    }
    expect(readdirSync(pinRoot).filter((n) => n.startsWith("nf-"))).toEqual([]);
    // The daemon is still fine.
    expect((await daemon.cli("status")).code).toBe(0);
  });

  it("answers bad gRPC requests with the right status codes", async () => {
    const client = new DaemonClient(daemon.socket);
    try {
      const codeOf = (p: Promise<unknown>) => p.then(() => "OK", (e: NetfenceError) => e.code);
      const cg = await sb.cgroup();
      expect(await codeOf(client.attach({}))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(client.attach({ target: { case: "cgroupPath", value: "/etc" } }))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(client.attach({ target: { case: "cgroupPath", value: "../.." } }))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(client.attach({ target: { case: "interfaceName", value: "nfnoexist0" } }))).toBe("NOT_FOUND");
      expect(await codeOf(client.detach("nf-000000000000"))).toBe("NOT_FOUND");
      const { id } = await client.attach({ target: { case: "cgroupPath", value: cg } });
      expect(await codeOf(client.attach({ target: { case: "cgroupPath", value: cg } }))).toBe("ALREADY_EXISTS");
      await client.detach(id);
      expect(await codeOf(client.list(-5))).toBe("INVALID_ARGUMENT");
      expect(await codeOf(client.list(10, "not-a-token"))).toBe("INVALID_ARGUMENT");
    } finally {
      client.close();
    }
  });

  it("reports DNS port exhaustion clearly", async () => {
    const sb2 = await Sandbox.create("nfex");
    const small = new DaemonProcess({ pinRoot: await sb2.pinRoot(), ports: 2, yaml: "default_policy: { mode: denylist }" });
    try {
      await small.start();
      const cgs = [await sb2.cgroup(), await sb2.cgroup(), await sb2.cgroup()];
      expect((await small.cli("attach", "-g", cgs[0]!)).code).toBe(0);
      expect((await small.cli("attach", "-g", cgs[1]!)).code).toBe(0);
      const r = await small.cli("attach", "-g", cgs[2]!);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`Error: no free DNS port in ${small.portMin}-${small.portMin + 1} (2 attachments); widen dns.port_min/dns.port_max\n`);
      const ids = (JSON.parse((await small.cli("list", "--json")).stdout) as { attachments: { id: string }[] }).attachments.map((a) => a.id);
      expect(ids).toHaveLength(2);
      for (const id of ids) expect((await small.cli("detach", "--id", id)).code).toBe(0);
    } finally {
      await small.cleanup();
      await sb2.cleanup();
    }
  });

  it("--help and --version", async () => {
    const v = await runCli(["--version"]);
    expect(v.code).toBe(0);
    const pkg = JSON.parse(readFileSync(path.join(process.cwd(), "package.json"), "utf8")) as { version: string };
    expect(v.stdout.trim()).toBe(pkg.version);
    const h = await runCli(["--help"]);
    expect(h.code).toBe(0);
    for (const cmd of ["start", "attach", "detach", "list", "status", "events"]) expect(h.stdout).toMatch(new RegExp(`^\\s+${cmd} `, "m"));
    expect(h.stdout).toContain("-s, --socket <path>");
    const ah = await runCli(["attach", "--help"]);
    expect(ah.stdout).toContain("-i, --interface <name>");
    expect(ah.stdout).toContain("-g, --cgroup <path>");
  });

  it("says how to start the daemon when it is not running", async () => {
    const sock = path.join(daemon.dir, "nobody-here.sock");
    const r = await runCli(["-s", sock, "list"]);
    expect(r.code).toBe(3);
    expect(r.stderr).toBe(`Error: daemon not running at ${sock}: start it with \`netfenced start\`\n`);
  });

  it("says permission denied, and how to fix it, when the socket may not be used (not \"not running\")", async () => {
    // As an unprivileged user: the daemon's socket directory (0700) and socket (0660) are root's.
    const asNobody = (sock: string) =>
      new Promise<{ code: number; stderr: string }>((resolve) => {
        import("node:child_process").then(({ spawn }) => {
          const c = spawn("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, path.join(process.cwd(), "cli/dist/index.js"), "-s", sock, "status"], { stdio: ["ignore", "pipe", "pipe"] });
          let stderr = "";
          c.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
          c.on("exit", (code) => resolve({ code: code ?? 1, stderr }));
        });
      });
    const r = await asNobody(daemon.socket);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^Error: permission denied on ${daemon.socket.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: run the command as root \\(e\\.g\\. with sudo\\), or as a member of the socket's group with access to its directory\n$`));
    // A socket that is reachable but not writable: the mode and owner are named.
    const { chmodSync } = await import("node:fs");
    chmodSync(daemon.dir, 0o755);
    try {
      const r2 = await asNobody(daemon.socket);
      expect(r2.stderr).toMatch(/^Error: permission denied on .*\(socket mode 0660, uid 0, gid 0\): run the command as root/);
    } finally {
      chmodSync(daemon.dir, 0o700);
    }
  });

  it("refuses a second daemon on the same socket without touching the first", async () => {
    const r = await runCli(["start", "--config", daemon.configFile], 30_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`netfenced: cannot start: another netfenced is already serving ${daemon.socket}\n`);
    expect((await daemon.cli("status")).code).toBe(0);
  });

  it("exits 2 with one line naming the key on bad config", async () => {
    const bad = await new Promise<{ code: number; stderr: string }>((resolve) => {
      import("node:child_process").then(({ spawn }) => {
        const c = spawn(process.execPath, [path.join(process.cwd(), "cli/dist/index.js"), "start"], {
          // (never starts: bad config; the port guard is off all the same, as in every config a test writes)
          env: { ...process.env, NETFENCE_DNS_PORT_MIN: "2000", NETFENCE_DNS_PORT_MAX: "1000", NETFENCE_DNS_PORT_GUARD: "false", NETFENCE_SOCKET: path.join(daemon.dir, "x.sock") },
          stdio: ["ignore", "pipe", "pipe"],
        });
        let stderr = "";
        c.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
        c.on("exit", (code) => resolve({ code: code ?? 1, stderr }));
      });
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe("netfenced: invalid config: dns.port_min: 2000 is greater than dns.port_max (1000)\n");
    expect(existsSync(path.join(daemon.dir, "x.sock"))).toBe(false);
  });
});
