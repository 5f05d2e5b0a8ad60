/**
 * `npm run demo`: Netfence end to end on a real namespace workload.
 *
 * Builds a VM-like workload namespace behind a veth, a stand-in "internet" namespace (web
 * servers and a dnsmasq upstream), starts netfence-cp with a YAML policy and the daemon, attaches
 * to the workload's host-side veth, then shows allowed and blocked traffic (HTTP via curl, ping,
 * DNS via dig), live counters, and a policy hot reload. Every check says what is expected; the
 * demo exits non-zero if anything behaves otherwise. Everything is removed at the end.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createServer } from "node:net";
import { projectRoot } from "../daemon/src/datapath/project-root.js";
import { findCgroup2Mount } from "../daemon/src/attachments/target.js";
import { createTopology, type DemoTopology } from "./demo/topology.js";

const root = projectRoot();
const CLI = path.join(root, "cli", "dist", "index.js");
const CP = path.join(root, "control-plane-example", "dist", "main.js");
const children: ChildProcess[] = [];
let failures = 0;

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const say = (s = "") => process.stdout.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function run(argv: string[], timeoutMs = 10_000): { code: number; out: string; err: string } {
  const r = spawnSync(argv[0]!, argv.slice(1), { timeout: timeoutMs, encoding: "utf8" });
  return { code: r.status ?? 1, out: r.stdout ?? "", err: r.stderr ?? "" };
}

function start(name: string, argv: string[], logFile: string): ChildProcess {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  const log = (d: Buffer) => appendFileSync(logFile, d);
  child.stdout!.on("data", log);
  child.stderr!.on("data", log);
  child.on("exit", (code, signal) => {
    if (!stopping) say(`  ! ${name} exited (code ${code ?? "-"}, signal ${signal ?? "-"}); see ${logFile}`);
  });
  children.push(child);
  return child;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      s.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

async function until(what: string, pred: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

function check(label: string, expected: "allowed" | "blocked", passed: boolean, detail: string): void {
  const ok = (expected === "allowed") === passed;
  if (!ok) failures++;
  const mark = ok ? (passed ? "✔ allowed" : "✘ blocked") : "‼ UNEXPECTED";
  say(`  ${mark.padEnd(13)} ${label.padEnd(44)} ${detail}`);
}

let stopping = false;
let topo: DemoTopology | null = null;
let workDir = "";
let pinRoot = "";
/** The demo daemon's DNS port guard covers this cgroup of its own, never the whole machine. */
let guardCgroup = "";

async function cleanup(socket: string | null): Promise<void> {
  stopping = true;
  if (socket) {
    const ids = run(["node", CLI, "-s", socket, "list", "--all", "--json"]);
    try {
      const list = JSON.parse(ids.out) as { attachments?: Array<{ id: string }> };
      for (const a of list.attachments ?? []) run(["node", CLI, "-s", socket, "detach", "--id", a.id]);
    } catch {
      /* daemon not answering: pins are removed below */
    }
  }
  for (const c of children.reverse()) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill("SIGTERM");
      await Promise.race([new Promise((r) => c.once("exit", r)), sleep(3000)]);
      if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    }
  }
  topo?.teardown();
  if (pinRoot) rmSync(pinRoot, { recursive: true, force: true });
  if (guardCgroup && existsSync(guardCgroup)) rmdirSync(guardCgroup);
  if (workDir && !process.env.NETFENCE_DEMO_KEEP) rmSync(workDir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("the demo needs root (it creates namespaces and loads eBPF programs)");
  workDir = mkdtempSync(path.join(tmpdir(), "netfence-demo-"));
  topo = createTopology();
  const t = topo;
  pinRoot = `/sys/fs/bpf/netfence-demo-${t.tag}`;
  const cgroupMount = findCgroup2Mount();
  if (cgroupMount === null) throw new Error("the demo needs a cgroup2 mount (for the daemon's DNS port guard)");
  guardCgroup = path.join(cgroupMount, `netfence-demo-${t.tag}`);
  mkdirSync(guardCgroup);
  const socket = path.join(workDir, "netfenced.sock");
  const inVm = (...argv: string[]) => ["ip", "netns", "exec", t.vmNs, ...argv];
  const inNet = (...argv: string[]) => ["ip", "netns", "exec", t.netNs, ...argv];

  say(bold("Netfence demo"));
  say(`  workload namespace ${t.vmNs} (${t.ip(2)}) behind host veth ${t.hostIf}; "internet" namespace ${t.netNs}`);
  say(`  work dir ${workDir}`);

  // The "internet": a web server on every address, and a DNS upstream that logs every query.
  const dnsLog = path.join(workDir, "upstream-queries.log");
  writeFileSync(dnsLog, "");
  start("web server", inNet(process.execPath, "-e",
    `require("http").createServer((q,r)=>r.end("hello from "+q.socket.localAddress+"\\n")).listen(80)`), path.join(workDir, "web.log"));
  start("dnsmasq", inNet("dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--user=root", "--pid-file=",
    `--listen-address=${t.ip(53)}`, "--bind-interfaces", "--log-queries", `--log-facility=${dnsLog}`,
    `--host-record=www.example.com,${t.ip(10)}`, `--host-record=api.example.com,${t.ip(10)}`,
    `--host-record=ads.example.com,${t.ip(66)}`, `--host-record=evil.example.net,${t.ip(66)}`), path.join(workDir, "dnsmasq.log"));

  // The control plane: netfence-cp with a YAML policy (hot-reloaded).
  const cpPort = await freePort();
  const policyFile = path.join(workDir, "policy.yaml");
  const policy = (extraAllow: string[]) => `# netfence-cp policy for the demo (edit me: changes are pushed as atomic BulkUpdates)
defaults:
  mode: block-all
rules:
  - name: demo
    match: {app: demo}
    mode: allowlist
    allow:
      - ${t.ip(20)}        # a "database", allowed by address
${extraAllow.map((a) => `      - ${a}\n`).join("")}    deny:
      - 169.254.169.254    # the cloud metadata service stays blocked
    dns:
      mode: allowlist
      allow: ["*.example.com"]
      deny: ["ads.example.com"]
      upstreams: ["${t.ip(53)}:53"]
`;
  writeFileSync(policyFile, policy([]));
  start("netfence-cp", ["node", CP, "--listen", `127.0.0.1:${cpPort}`, "--policy", policyFile], path.join(workDir, "netfence-cp.log"));

  // The daemon.
  const config = path.join(workDir, "netfenced.yaml");
  writeFileSync(config, `socket: ${socket}
data_dir: ${path.join(workDir, "state")}
log_level: info
dns:
  listen_addr: ${t.gateway}
  port_min: 11000
  port_max: 11500
  upstream: ${t.ip(53)}:53
  port_guard_cgroup: ${guardCgroup}   # a real host leaves this out: the whole machine is guarded
control_plane:
  url: 127.0.0.1:${cpPort}
  heartbeat_interval: 2s
metadata:
  host: demo-host
bpf:
  pin_root: ${pinRoot}
`);
  const daemonLog = path.join(workDir, "netfenced.log");
  start("netfenced", ["node", CLI, "start", "--config", config], daemonLog);
  await until("the daemon to answer on its socket", () => run(["node", CLI, "-s", socket, "status"]).code === 0);
  say();
  say(bold("$ netfenced status"));
  say(run(["node", CLI, "-s", socket, "status"]).out.trimEnd().replace(/^/gm, "  "));
  await until("the control plane connection", () => /CONNECTED/i.test(run(["node", CLI, "-s", socket, "status", "--json"]).out));

  say();
  say(bold(`$ netfenced attach --interface ${t.hostIf} --metadata app=demo,vm=vm-1`));
  const attach = run(["node", CLI, "-s", socket, "attach", "--interface", t.hostIf, "--metadata", "app=demo,vm=vm-1"], 15_000);
  if (attach.code !== 0) throw new Error(`attach failed: ${attach.err.trim()}`);
  say(attach.out.trimEnd().replace(/^/gm, "  "));
  const id = /ID: (\S+)/.exec(attach.out)![1]!;
  const dnsPort = /DNS Address: \S+:(\d+)/.exec(attach.out)![1]!;

  const dig = (name: string, type = "A") => {
    const r = run(inVm("dig", `@${t.gateway}`, "-p", dnsPort, name, type, "+tries=1", "+time=2"));
    const status = /status: (\w+)/.exec(r.out)?.[1] ?? "TIMEOUT";
    const answer = r.out.split("\n").find((l) => /\sIN\s+A{1,4}\s/.test(l) && !l.startsWith(";"))?.trim().split(/\s+/).pop() ?? "";
    return { status, answer };
  };
  const curl = (url: string, resolve?: string) => {
    const r = run(inVm("curl", "-s", "--max-time", "2", ...(resolve ? ["--resolve", resolve] : []), url), 8000);
    return { ok: r.code === 0, body: r.out.trim() };
  };
  const ping = (ip: string) => run(inVm("ping", "-n", "-c", "1", "-W", "1", ip), 5000).code === 0;

  say();
  say(bold("Traffic from the workload (policy: allowlist; DNS allowlist *.example.com, deny ads.example.com)"));
  const before = curl(`http://${t.ip(10)}/`);
  check(`curl http://${t.ip(10)}/ before any DNS answer`, "blocked", before.ok, before.ok ? before.body : "dropped: not in the allowlist yet");
  const www = dig("www.example.com");
  check("dig www.example.com", "allowed", www.status === "NOERROR" && www.answer === t.ip(10), `${www.status} ${www.answer} (now in the kernel allowlist)`);
  const web = curl("http://www.example.com/", `www.example.com:80:${www.answer || t.ip(10)}`);
  check("curl http://www.example.com/", "allowed", web.ok, web.ok ? `"${web.body}"` : "dropped");
  const evil = dig("evil.example.net");
  const evilLogged = readFileSync(dnsLog, "utf8").includes("evil.example.net");
  check("dig evil.example.net (not allowed)", "blocked", evil.status !== "REFUSED", `${evil.status}; reached the upstream: ${evilLogged ? "YES" : "no"}`);
  if (evilLogged) failures++;
  const ads = dig("ads.example.com");
  check("dig ads.example.com (deny beats *.example.com)", "blocked", ads.status !== "REFUSED", ads.status);
  const direct = curl(`http://${t.ip(66)}/`);
  check(`curl http://${t.ip(66)}/ (evil, by address)`, "blocked", direct.ok, direct.ok ? direct.body : "dropped");
  check(`ping ${t.ip(20)} (allowed CIDR)`, "allowed", ping(t.ip(20)), "");
  check(`ping ${t.ip(30)} (not listed)`, "blocked", ping(t.ip(30)), "");

  say();
  say(bold("Live policy change: the policy file now also allows " + t.ip(30)));
  writeFileSync(policyFile, policy([`${t.ip(30)}        # added while running`]));
  let opened = false;
  for (let i = 0; i < 20 && !opened; i++) {
    opened = ping(t.ip(30));
    if (!opened) await sleep(250);
  }
  check(`ping ${t.ip(30)} after the hot reload`, "allowed", opened, "(BulkUpdate pushed by netfence-cp, applied atomically)");

  await sleep(2500); // one heartbeat, so the control plane has seen the counters too
  say();
  say(bold("$ netfenced list"));
  say(run(["node", CLI, "-s", socket, "list"]).out.trimEnd().replace(/^/gm, "  "));
  say();
  say(`  attachment ${id}; daemon log: ${daemonLog}`);
  await cleanup(socket);
  say();
  if (failures > 0) {
    say(bold(`Demo finished with ${failures} unexpected result(s).`));
    process.exitCode = 1;
  } else {
    say(bold("Demo finished: every packet went where the policy said. Everything it created has been removed."));
  }
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    void cleanup(null).then(() => process.exit(130));
  });
}

main().catch(async (err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  if (workDir) process.stderr.write(`logs are in ${workDir} (kept)\n`);
  process.env.NETFENCE_DEMO_KEEP = "1";
  await cleanup(null);
  process.exitCode = 1;
});
