import { afterEach, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import { AttachmentManager } from "../../../daemon/src/attachments/manager.js";
import type { TamperReport } from "../../../daemon/src/attachments/tamper-watch.js";
import { FakeBpffs, FakeFilter } from "../../../daemon/src/datapath/fake-filter.js";
import { ContentShadows, entryHash } from "../../../daemon/src/datapath/content-shadow.js";
import { TamperForwarder } from "../../../daemon/src/tamper-forwarder.js";
import { MemoryStateStore } from "../../../daemon/src/store/state-store.js";
import { parseCidr } from "@netfence/proto/parse";
import { FakeDnsServers, RecordingPolicySource, fakeCgroupRoot, policy, silentLogger } from "./fakes.js";
import { waitFor } from "../../helpers/daemon-harness.js";

// The daemon side of tamper detection on the fake filter: findings → repair primitives → report
// (hook, count); the content shadow's arithmetic; the forwarder's buffering. The kernel side (what
// VERIFY sees, real repairs, real packets) is test/kernel/tamper/tamper.test.ts.

const managers: AttachmentManager[] = [];
const roots: string[] = [];
afterEach(async () => {
  for (const m of managers.splice(0)) await m.stop();
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

async function rig(reports: TamperReport[]) {
  const bpffs = new FakeBpffs();
  const filter = new FakeFilter(bpffs);
  const root = fakeCgroupRoot("a");
  roots.push(root);
  const manager = new AttachmentManager({
    filter, policySource: new RecordingPolicySource(policy({ mode: "allowlist" })), store: new MemoryStateStore(), dnsServers: new FakeDnsServers(),
    logger: silentLogger, dns: { listenAddr: "127.0.0.1", portMin: 11000, portMax: 11010 }, cgroupRoot: root, gcIntervalMs: 0,
    integrityIntervalMs: 0, tamperIntervalMs: 50, contentEvery: 1, fallbackDaemonId: "nfd-test", onTamper: (r) => reports.push(r),
  });
  managers.push(manager);
  await manager.start();
  const a = await manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
  return { manager, filter, bpffs, id: a.id };
}

describe("TamperWatch (fake filter)", () => {
  it("each finding is repaired with its primitive, checked again and reported restored", async () => {
    const reports: TamperReport[] = [];
    const { filter, bpffs, id, manager } = await rig(reports);
    const mark = filter.calls.length;
    bpffs.tamper.set(id, [
      { kind: "filter-detached", detail: "gone", repair: "relink" },
      { kind: "map-replaced", detail: "v4_lpm", repair: "repin" },
      { kind: "map-content", detail: "entry", repair: "rewrite" },
    ]);
    await waitFor(() => reports.length === 3, "three reports", 5000);
    expect(reports.map((r) => [r.attachmentId, r.kind, r.restored])).toEqual([
      [id, "filter-detached", true], [id, "map-replaced", true], [id, "map-content", true],
    ]);
    expect(filter.calls.slice(mark).map((c) => c.method)).toEqual(["relink", "replacePolicy"]);
    expect(bpffs.tamper.has(id)).toBe(false);
    expect(manager.tamperDetected).toBe(3);
  });

  it("a repair that does not hold is reported as not restored", async () => {
    const reports: TamperReport[] = [];
    const { filter, bpffs, id } = await rig(reports);
    filter.failNext("relink");
    bpffs.tamper.set(id, [{ kind: "program-replaced", detail: "foreign", repair: "relink" }]);
    await waitFor(() => reports.some((r) => r.restored), "a restored report after the retry", 5000);
    expect(reports[0]).toMatchObject({ attachmentId: id, kind: "program-replaced", restored: false });
  });
});

describe("ContentShadows", () => {
  const e = (c: string, allow = true, expiresAtMs: number | null = null) => ({ cidr: parseCidr(c), allow, deny: !allow, expiresAtMs });

  it("is order-independent and follows upserts, deletes and overwrites", () => {
    const now = 1_000;
    const a = new ContentShadows();
    const b = new ContentShadows();
    a.replaced("x", { mode: "allowlist", audit: false, entries: [e("10.0.0.0/8"), e("10.1.2.3/32", false), e("2001:db8::/32")] }, now);
    b.replaced("x", { mode: "allowlist", audit: false, entries: [e("2001:db8::/32")] }, now);
    b.upserted("x", [e("10.1.2.3/32"), e("10.0.0.0/8")], now);
    expect(b.expect("x")).not.toEqual(a.expect("x")); // 10.1.2.3 is an allow in b
    b.upserted("x", [e("10.1.2.3/32", false)], now); // overwrite
    expect(b.expect("x")).toEqual(a.expect("x"));
    b.upserted("x", [e("192.0.2.1/32")], now);
    b.deleted("x", [parseCidr("192.0.2.1/32"), parseCidr("198.51.100.0/24")]);
    expect(b.expect("x")).toEqual(a.expect("x"));
  });

  it("leaves out entries sent already expired, and knows nothing after a failed write", () => {
    const s = new ContentShadows();
    s.replaced("x", { mode: "denylist", audit: true, entries: [e("10.0.0.0/8", true, 500), e("10.0.0.1/32", true, 5_000)] }, 1_000);
    expect(s.expect("x")).toMatchObject({ mode: "denylist", audit: true, entries: 1 });
    s.unknown("x");
    expect(s.expect("x")).toBeNull();
  });

  it("hashes the address masked to the prefix, and whether a deadline exists (not which)", () => {
    expect(entryHash(e("10.0.0.0/8"))).toEqual(entryHash({ ...e("10.0.0.0/8"), cidr: { ...parseCidr("10.0.0.0/8"), addr: Uint8Array.of(10, 9, 9, 9) } }));
    expect(entryHash(e("10.0.0.0/8", true, 1))).toEqual(entryHash(e("10.0.0.0/8", true, 2)));
    expect(entryHash(e("10.0.0.0/8", true, 1))).not.toEqual(entryHash(e("10.0.0.0/8")));
  });
});

describe("TamperForwarder", () => {
  it("keeps reports while the control plane is away and sends them in order when it is back", async () => {
    let up = false;
    const sent: string[] = [];
    const f = new TamperForwarder((r) => (up ? (sent.push(r.kind), true) : false), 20);
    f.report({ attachmentId: "a", kind: "filter-detached", detail: "", timeMs: 1, restored: true });
    f.report({ attachmentId: "a", kind: "map-content", detail: "", timeMs: 2, restored: true });
    expect(sent).toEqual([]);
    up = true;
    await waitFor(() => sent.length === 2, "the kept reports", 2000);
    expect(sent).toEqual(["filter-detached", "map-content"]);
    f.stop();
  });
});
