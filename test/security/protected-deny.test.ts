import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProtectedEntry } from "../../daemon/src/datapath/filter.js";
import { parseCidr } from "@netfence/proto/parse";
import { allow, policy } from "../helpers/kernel-filter-fixture.js";
import { probe } from "../helpers/sandbox.js";
import { marker } from "./tools/nfpkt.js";
import { closeWorld, eventLog, fire, ifaceSpec, securityWorld, type World } from "./world.js";

const PORT = 7261;

/**
 * The host-wide protected-deny set (config `protected_deny`): destinations no policy can open,
 * dropped in every mode including disabled, for interfaces and cgroups. A protected(-allow) entry
 * still wins (lockout safety), scoped to its protocol and port. (Before this change a deny entry
 * was sent to the kernel as an allow.)
 */
describe("protected-deny: dropped in every mode, whatever the policy allows", () => {
  let w: World | undefined;
  const id = `sec-pd-${process.pid}`;
  let slot = 130;
  const deny = (cidr: string): ProtectedEntry => ({ cidr: parseCidr(cidr), protocol: 0, port: 0, action: "deny" });

  beforeAll(async () => {
    w = await securityWorld("secpd");
    await w.sb.echoServer(w.net.serverNs, PORT);
  });
  afterAll(async () => {
    await w?.filter.setProtected([]).catch(() => undefined);
    await closeWorld(w);
  });

  const reach = (kind: "tcp" | "udp", ip: string, ok: boolean, cgroup?: string) => probe(w!.sb, w!.net.workloadNs, kind, ip, { port: PORT, cgroup, timeoutMs: ok ? 3000 : 800 });

  it("interface, every mode: denied destinations never arrive; a protected allow (tcp/PORT) still wins over a deny", async () => {
    const { filter, net, serverMac } = w!;
    const [d1, d2, ok] = [net.serverIp4[1]!, net.serverIp4[2]!, net.serverIp4[3]!];
    await filter.setProtected([
      deny(`${d1}/32`),
      deny(`${net.serverIp6[1]}/128`),
      deny(`${d2}/32`),
      { cidr: parseCidr(`${d2}/32`), protocol: 6, port: PORT }, // lockout safety: tcp/PORT stays open
    ]);
    try {
      for (const mode of ["disabled", "denylist", "allowlist", "block-all"] as const) {
        await filter.attach(ifaceSpec(id, slot++, net.hostIf), policy(mode, [allow(`${net.subnet4}.0/24`), allow(`${net.subnet6}::/64`)]));
        try {
          const events = eventLog(filter);
          expect(await reach("tcp", d1, false), `${mode}: tcp ${d1}`).toBe(false);
          expect(await reach("udp", net.serverIp6[1]!, false), `${mode}: udp ${net.serverIp6[1]}`).toBe(false);
          expect(await reach("tcp", d2, true), `${mode}: tcp/${PORT} to ${d2} (protected allow)`).toBe(true);
          expect(await reach("udp", d2, false), `${mode}: udp to ${d2}`).toBe(false);
          if (mode !== "block-all") expect(await reach("tcp", ok, true), `${mode}: ${ok}`).toBe(true);
          expect(await events.find((e) => e.dst === d1 && e.reason === "protected-deny")).toMatchObject({ verdict: "blocked" });
          events.stop();
          const shot = { spec: [`eth=self,${serverMac}`, `ip4=${net.workloadIp4},${d1}`, `udp=40006,${PORT}`], mark: marker(`pd${mode}`) };
          const [atServer] = await fire(w!, [shot], [{ ns: net.serverNs, iface: "sv0" }], 1000);
          expect(atServer!.get(shot.mark)).toBe(0);
        } finally {
          await filter.detach(id);
        }
      }
    } finally {
      await filter.setProtected([]);
    }
  });

  it("cgroup, audit mode included; removing the entry opens the destination again", async () => {
    const { sb, filter, net } = w!;
    const cg = await sb.cgroup();
    const d1 = net.serverIp4[4]!;
    await filter.setProtected([deny(`${d1}/32`)]);
    await filter.attach({ id, slot: slot++, target: { kind: "cgroup", path: cg }, dns: { ipv4: null, ipv6: null, port: 0 } }, policy("disabled", [], true));
    try {
      expect(await reach("tcp", d1, false, cg)).toBe(false);
      expect(await reach("tcp", net.serverIp4[5]!, true, cg)).toBe(true);
      await filter.setProtected([]);
      expect(await reach("tcp", d1, true, cg)).toBe(true);
    } finally {
      await filter.detach(id);
      await filter.setProtected([]);
    }
  });
});
