import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allow, policy } from "../helpers/kernel-filter-fixture.js";
import { probe } from "../helpers/sandbox.js";
import { marker } from "./tools/nfpkt.js";
import { closeWorld, eventLog, fire, ifaceSpec, securityWorld, type World } from "./world.js";

const DNS_A = 7250;
const DNS_B = 7251; // the DNS range is 7250-7259; 7270 is an ordinary port on the same address

/**
 * Tenant isolation for DNS (issue 10 item 5, kernel part): tenant A's packets to tenant B's DNS
 * server — the shared DNS address, a port of the daemon's DNS range that is not A's — are dropped
 * in every mode, disabled included, and whatever the policy allows. Tenant A is the sandbox
 * workload, tenant B a second namespace on the same bridge with its own attachment; the server
 * namespace stands in for the host's DNS address.
 */
describe("other tenants' DNS servers are unreachable in every mode", () => {
  let w: World | undefined;
  const idA = `sec-da-${process.pid}`;
  const idB = `sec-db-${process.pid}`;
  let dns4: string;
  let dns6: string;

  beforeAll(async () => {
    w = await securityWorld("secdn", { neighbour: true });
    const { sb, net } = w;
    dns4 = net.serverIp4[9]!;
    dns6 = net.serverIp6[9]!;
    for (const port of [DNS_A, DNS_B, 7270]) await sb.echoServer(net.serverNs, port);
  });
  afterAll(async () => {
    await closeWorld(w);
  });

  const dnsSpec = (port: number) => ({ ipv4: dns4, ipv6: dns6, port, portMin: DNS_A, portMax: DNS_A + 9 });
  const reach = (ns: string, kind: "tcp" | "udp", ip: string, port: number, ok: boolean) => probe(w!.sb, ns, kind, ip, { port, timeoutMs: ok ? 3000 : 800 });

  for (const mode of ["disabled", "denylist", "allowlist"] as const) {
    it(`${mode}: A reaches its own DNS port, never B's (UDP, TCP, IPv4, IPv6); B reaches its own`, async () => {
      const { filter, net, nb } = w!;
      // In allowlist mode the policy even allows the DNS address explicitly: the guard comes first.
      const entries = mode === "allowlist" ? [allow(`${dns4}/32`), allow(`${dns6}/128`)] : [];
      await filter.attach(ifaceSpec(idA, mode === "disabled" ? 100 : mode === "denylist" ? 101 : 102, net.hostIf, { dns: dnsSpec(DNS_A) }), policy(mode, entries));
      await filter.attach(ifaceSpec(idB, mode === "disabled" ? 103 : mode === "denylist" ? 104 : 105, nb!.hostIf, { dns: dnsSpec(DNS_B) }), policy(mode, entries));
      try {
        const events = eventLog(filter);
        // The full matrix once (disabled); a sample in the other modes (each probe is a process).
        const full = mode === "disabled";
        for (const kind of full ? (["udp", "tcp"] as const) : (["udp"] as const)) {
          for (const ip of full ? [dns4, dns6] : kind === "udp" ? [dns4] : [dns6]) {
            expect(await reach(net.workloadNs, kind, ip, DNS_A, true), `A ${kind} ${ip}:${DNS_A}`).toBe(true);
            expect(await reach(net.workloadNs, kind, ip, DNS_B, false), `A ${kind} ${ip}:${DNS_B}`).toBe(false);
            expect(await reach(nb!.ns, kind, ip, DNS_B, true), `B ${kind} ${ip}:${DNS_B}`).toBe(true);
            expect(await reach(nb!.ns, kind, ip, DNS_A, false), `B ${kind} ${ip}:${DNS_A}`).toBe(false);
          }
        }
        // Outside the DNS range the policy decides as usual (here every mode lets it pass).
        expect(await reach(net.workloadNs, "tcp", dns4, 7270, true)).toBe(true);
        expect(await events.find((e) => e.reason === "other-tenant-dns" && e.dstPort === DNS_B && e.dst === dns4)).toMatchObject({ verdict: "blocked" });
        // The sniffer on the far side sees A's frames to its own port, none to B's.
        const own = { spec: [`eth=self,${w!.serverMac}`, `ip4=${net.workloadIp4},${dns4}`, `udp=40003,${DNS_A}`], mark: marker(`${mode[0]}own`) };
        const other = { spec: [`eth=self,${w!.serverMac}`, `ip4=${net.workloadIp4},${dns4}`, `udp=40003,${DNS_B}`], mark: marker(`${mode[0]}oth`) };
        const other6 = { spec: [`eth=self,${w!.serverMac}`, `ip6=${net.workloadIp6},${dns6}`, `tcp=40003,${DNS_B}`], mark: marker(`${mode[0]}oth6`) };
        const [atServer] = await fire(w!, [own, other, other6], [{ ns: net.serverNs, iface: "sv0" }]);
        expect(atServer!.get(own.mark)).toBeGreaterThan(0);
        expect(atServer!.get(other.mark)).toBe(0);
        expect(atServer!.get(other6.mark)).toBe(0);
        events.stop();
      } finally {
        await filter.detach(idA);
        await filter.detach(idB);
      }
    });
  }
});
