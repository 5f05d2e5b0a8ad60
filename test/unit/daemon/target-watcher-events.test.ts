import { afterEach, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import path from "node:path";
import { TargetWatcher } from "../../../daemon/src/attachments/target-watcher.js";
import { LinkMonitor, parseLinkLine } from "../../../daemon/src/attachments/link-monitor.js";
import { readFileSync, readdirSync } from "node:fs";
import type { WatchedTarget } from "../../../daemon/src/attachments/manager.js";
import { fakeCgroupRoot, silentLogger } from "./fakes.js";

// The event-driven target watcher (issue 13): with the periodic tick and the safety sweep far
// away (60 s), only an event can make it notice a vanished target within the test.

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

async function until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const FAR = { fallbackPollMs: 60_000, sweepIntervalMs: 60_000 };

describe("TargetWatcher events", () => {
  it("parses `ip -o monitor link address` lines", () => {
    expect(parseLinkLine("Deleted 7: nfa0@if6: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN")).toEqual({ kind: "link", ifindex: 7, name: "nfa0", deleted: true });
    expect(parseLinkLine("12: eth9: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP")).toEqual({ kind: "link", ifindex: 12, name: "eth9", deleted: false });
    expect(parseLinkLine("[LINK]Deleted 3: x@y: <>")).toEqual({ kind: "link", ifindex: 3, name: "x", deleted: true });
    expect(parseLinkLine("3: mx0    inet 10.9.9.1/24 scope global mx0\\       valid_lft forever")).toEqual({ kind: "address", ifindex: 3, name: "mx0", deleted: false });
    expect(parseLinkLine("Deleted 2: mx1    inet6 fe80::9004:72ff:fe07:85e3/64 scope link")).toEqual({ kind: "address", ifindex: 2, name: "mx1", deleted: true });
    expect(parseLinkLine("    link/ether 00:11:22:33:44:55 brd ff:ff:ff:ff:ff:ff")).toBeNull();
  });

  it("a link event checks the interface attachments with that ifindex or name, and only them", async () => {
    const dead = new Set<string>();
    const checked: string[] = [];
    const targets: WatchedTarget[] = [
      { id: "by-index", target: { kind: "interface", name: "renamed-away", direction: "ingress" }, ifindex: 5 },
      { id: "by-name", target: { kind: "interface", name: "nfx0", direction: "ingress" }, ifindex: 0 },
      { id: "other", target: { kind: "interface", name: "nfy0", direction: "ingress" }, ifindex: 9 },
    ];
    const gone: string[] = [];
    // One event for ifindex 5 named nfx0, 400 ms after the monitor starts.
    const w = new TargetWatcher(() => targets, async (id) => void gone.push(id), silentLogger, {
      ...FAR,
      linkMonitorCommand: ["sh", "-c", "sleep 0.4; echo 'Deleted 5: nfx0@if4: <BROADCAST,MULTICAST> mtu 1500'; sleep 30"],
      alive: (t) => {
        checked.push(t.id);
        return !dead.has(t.id);
      },
    });
    w.start();
    cleanups.push(() => w.stop());
    await until(() => checked.length === 3, "the first check of what is attached");
    dead.add("by-index").add("by-name").add("other");
    await until(() => gone.length === 2, "both attachments matched by the event");
    expect(gone.sort()).toEqual(["by-index", "by-name"]);
    expect(checked.filter((id) => id === "other")).toHaveLength(1); // only the start-up check
  });

  it("polls interfaces while the link monitor is down, and restarts it", async () => {
    let dead = false;
    const gone: string[] = [];
    const w = new TargetWatcher(
      () => [{ id: "a", target: { kind: "interface", name: "nfz0", direction: "ingress" }, ifindex: 3 }],
      async (id) => void gone.push(id),
      silentLogger,
      { fallbackPollMs: 50, sweepIntervalMs: 60_000, linkMonitorCommand: ["sh", "-c", "exit 0"], alive: () => !dead },
    );
    w.start();
    cleanups.push(() => w.stop());
    await new Promise((r) => setTimeout(r, 200));
    dead = true;
    await until(() => gone.length === 1, "the poll to notice the interface");
    expect(gone).toEqual(["a"]);
  });

  it("a removed cgroup is noticed through inotify on its parent", async () => {
    const root = fakeCgroupRoot("a", "b");
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));
    const gone: string[] = [];
    const w = new TargetWatcher(
      () => [
        { id: "cg-a", target: { kind: "cgroup", path: path.join(root, "a") }, ifindex: 0 },
        { id: "cg-b", target: { kind: "cgroup", path: path.join(root, "b") }, ifindex: 0 },
      ],
      async (id) => void gone.push(id),
      silentLogger,
      { ...FAR, linkMonitorCommand: ["sh", "-c", "sleep 30"] },
    );
    w.start();
    cleanups.push(() => w.stop());
    await new Promise((r) => setTimeout(r, 100));
    expect(gone).toEqual([]);
    rmSync(path.join(root, "b"), { recursive: true });
    await until(() => gone.length === 1, "the inotify event for b");
    expect(gone).toEqual(["cg-b"]);
  });

  it("the real monitor runs `ip -o monitor link address`, and stop() leaves no process behind", async () => {
    const ipMonitors = (): number[] => readdirSync("/proc").filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8") === "ip\0-o\0monitor\0link\0address\0" && readFileSync(`/proc/${p}/status`, "utf8").includes(`PPid:\t${shPid()}\n`);
      } catch {
        return false;
      }
    }).map(Number);
    let downs = 0;
    const m = new LinkMonitor(() => undefined, () => undefined, () => void downs++, silentLogger);
    const shPid = (): number => (m as unknown as { child: { pid: number } | null }).child?.pid ?? -1;
    m.start();
    cleanups.push(() => m.stop());
    await until(() => ipMonitors().length === 1, "ip monitor under the wrapper");
    const pid = ipMonitors()[0]!;
    await new Promise((r) => setTimeout(r, 300));
    expect(downs).toBe(0); // the wrapper keeps it running (stdin of an async list is /dev/null in sh)
    m.stop();
    await until(() => { try { readFileSync(`/proc/${pid}/cmdline`); return false; } catch { return true; } }, "ip monitor to exit");
  });
});
