// End-to-end attach through the daemon's own data-path driver (KernelFilter, TypeScript) inside a qemu guest:
// Node 20 -> KernelFilter -> the real netfence-loader -> the prebuilt objects, with real packets.
// Bundled by run.sh with esbuild into one .mjs (the guest has node but no node_modules).
// Only ever runs inside the throwaway guest: the interface lives in the guest's root namespace.
//
// usage: node node-check.mjs LOADER BPF_DIR PIN_ROOT IFNAME WORKLOAD_NETNS_FILE [auto|tcx|clsact]
// The workload netns holds 10.1.0.2/24; IFNAME (host side) holds 10.1.0.1/24 and 10.1.0.254/24.
// Prints "ok   ..." / "FAIL ..." lines and "NODE-E2E: PASS method=<m>" or "NODE-E2E: FAIL <reason>".
import { spawnSync } from "node:child_process";
import { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import type { AttachMethod, AttachMethodPreference } from "../../daemon/src/datapath/filter.js";
import { parseCidr } from "@netfence/proto/parse";

const [loaderPath, bpfDir, pinRoot, ifname, wlNs, pref] = process.argv.slice(2);
const method: AttachMethodPreference = pref === "tcx" || pref === "clsact" ? pref : "auto";
const ID = "node-e2e";
const fails: string[] = [];

function check(cond: boolean, msg: string): void {
  console.log(`${cond ? "ok  " : "FAIL"} node: ${msg}`);
  if (!cond) fails.push(msg);
}

/** ping from the workload netns; true if a reply came back within `wait` seconds (busybox nsenter + ping). */
function ping(dst: string, wait: number, tries: number): boolean {
  for (let i = 0; i < tries; i++) {
    const r = spawnSync("nsenter", [`--net=${wlNs}`, "ping", "-c", "1", "-W", String(wait), dst], { stdio: "ignore" });
    if (r.status === 0) return true;
  }
  return false;
}

async function main(): Promise<AttachMethod | "none"> {
  if (!loaderPath || !bpfDir || !pinRoot || !ifname || !wlNs) throw new Error("usage: node-check LOADER BPF_DIR PIN_ROOT IFNAME NETNS");
  const filter = await KernelFilter.start({ loaderPath, bpfDir, pinRoot });
  check(filter.hello !== null, `KernelFilter started the loader (HELLO: tcx=${filter.hello?.tcx ?? "?"})`);
  let used: AttachMethod | "none" = "none";
  try {
    const r = await filter.attach(
      { id: ID, slot: 21, target: { kind: "interface", name: ifname, direction: "ingress" }, dns: { ipv4: null, ipv6: null, port: 0 }, method },
      { mode: "allowlist", audit: false, entries: [{ cidr: parseCidr("10.1.0.1/32"), allow: true, deny: false, expiresAtMs: null }] },
    );
    used = r.method;
    check(r.ifindex > 0, `attach ${ifname} (ifindex ${r.ifindex}, preference ${method}) -> method ${r.method}`);
    check(ping("10.1.0.1", 5, 3), "ping 10.1.0.1 (allowed) passes");
    check(!ping("10.1.0.254", 1, 1), "ping 10.1.0.254 (not allowed) is dropped");
    const c = (await filter.counters([ID])).get(ID);
    check(c !== undefined && c.blocked >= 1n && c.allowed >= 1n, `counters allowed=${c?.allowed} blocked=${c?.blocked}`);
    await filter.detach(ID);
    check(ping("10.1.0.254", 5, 3), "after detach: ping 10.1.0.254 passes");
  } finally {
    await filter.close();
  }
  return used;
}

main().then(
  (used) => {
    console.log(fails.length ? `NODE-E2E: FAIL ${fails[0]} (method=${used})` : `NODE-E2E: PASS method=${used}`);
    process.exit(fails.length ? 1 : 0);
  },
  (err: unknown) => {
    console.log(`FAIL node: ${err instanceof Error ? err.message : String(err)}`);
    console.log(`NODE-E2E: FAIL ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
