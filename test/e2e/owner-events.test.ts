import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { probe, type Sandbox, type SandboxNetwork } from "../helpers/sandbox.js";
import type { E2eDaemon } from "../helpers/e2e.js";
import { followEvents, ownerEventsWorld, type OwnerEventsWorld } from "../helpers/owner-events.js";

// Issue 15, end to end: blocked attempts are reported with the socket owner. The real `netfenced`
// (dist/) with a cgroup attachment in allowlist mode; processes of uid 1 (daemon) and uid 65534
// (nobody) in the cgroup connect to a TCP server on the namespace's 127.0.0.1 and are dropped by the
// kernel; `netfenced events --json` (WatchEvents) must carry each one's uid and user name, and the
// text output `uid=N(name)`.

const PORT = 7461;

interface WireEvent {
  attachmentId?: string;
  dst?: string;
  dstPort?: number;
  verdict?: string;
  reason?: string;
  uid?: number;
  user?: string;
}

describe("events name the socket owner (real daemon, cgroup attachment, real packets)", () => {
  let world: OwnerEventsWorld | undefined;
  let sb: Sandbox;
  let net: SandboxNetwork;
  let daemon: E2eDaemon;
  let cgroup: string;
  let id = "";

  beforeAll(async () => {
    world = await ownerEventsWorld("nfow", [PORT, PORT + 1]);
    ({ sb, net, daemon, cgroup, id } = world);
  }, 120_000);

  afterAll(() => world?.cleanup());

  const connectAs = (uid: number, port: number): Promise<boolean> => probe(sb, net.workloadNs, "tcp", "127.0.0.1", { port, uid, cgroup, timeoutMs: 600 });

  const follow = (json: boolean) => followEvents(daemon, id, json);

  it("a blocked connect of uid 65534 and one of uid 1: each event carries its uid and user name", async () => {
    const json = follow(true);
    const text = follow(false);
    try {
      // The kernel folds repeats of one flow (same address, port and reason) for 10 s, so every
      // connect goes to a port not used before. First both followers must be subscribed: uid 3's
      // connects on fresh ports (no server: only the events matter) until each stream shows one
      // (under load the two CLIs take seconds to start); then the two owners' connects, to ports
      // with a server, so that "not ok" means dropped, not refused.
      const seen = () => json.lines.map((l) => JSON.parse(l) as WireEvent);
      let port = PORT + 10;
      const until = async (ok: () => boolean, ms: number): Promise<boolean> => {
        const deadline = Date.now() + ms;
        while (!ok() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        return ok();
      };
      let subscribed = false;
      for (let i = 0; i < 30 && !subscribed; i++) {
        await connectAs(3, port++);
        subscribed = await until(() => seen().some((e) => e.uid === 3) && text.lines.some((l) => l.includes("uid=3")), 1000);
      }
      expect(subscribed, "both event followers subscribed").toBe(true);
      expect(await connectAs(65534, PORT), "uid 65534 is blocked").toBe(false);
      expect(await connectAs(1, PORT + 1), "uid 1 is blocked").toBe(false);
      await until(() => seen().some((e) => e.uid === 1) && seen().some((e) => e.uid === 65534) && text.lines.some((l) => l.includes("uid=65534")), 10_000);
      const byUid = new Map(seen().map((e) => [e.uid, e]));
      expect(byUid.get(65534)).toMatchObject({ attachmentId: id, dst: "127.0.0.1", verdict: "VERDICT_BLOCKED", user: "nobody" });
      expect(byUid.get(1)).toMatchObject({ attachmentId: id, dst: "127.0.0.1", verdict: "VERDICT_BLOCKED", user: "daemon" });
      expect(text.lines.join("\n")).toMatch(/uid=65534\(nobody\)/);
    } finally {
      await json.stop();
      await text.stop();
    }
  }, 120_000);
});
