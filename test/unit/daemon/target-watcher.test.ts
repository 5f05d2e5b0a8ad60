import { afterEach, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import path from "node:path";
import { TargetWatcher } from "../../../daemon/src/attachments/target-watcher.js";
import type { WatchedTarget } from "../../../daemon/src/attachments/manager.js";
import { fakeCgroupRoot, silentLogger } from "./fakes.js";

const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

describe("TargetWatcher", () => {
  it("reports a vanished cgroup, a missing interface and a re-created interface once each", async () => {
    const root = fakeCgroupRoot("a", "b");
    roots.push(root);
    const targets: WatchedTarget[] = [
      { id: "cg-a", target: { kind: "cgroup", path: path.join(root, "a") }, ifindex: 0 },
      { id: "cg-b", target: { kind: "cgroup", path: path.join(root, "b") }, ifindex: 0 },
      { id: "lo-ok", target: { kind: "interface", name: "lo", direction: "ingress" }, ifindex: 1 },
      { id: "lo-recreated", target: { kind: "interface", name: "lo", direction: "ingress" }, ifindex: 987654 },
      { id: "if-gone", target: { kind: "interface", name: "nfnoexist0", direction: "ingress" }, ifindex: 5 },
    ];
    const gone: string[] = [];
    let failOnce = true;
    const w = new TargetWatcher(
      () => targets,
      async (id) => {
        if (id === "cg-b" && failOnce) {
          failOnce = false;
          throw new Error("busy");
        }
        gone.push(id);
      },
      silentLogger,
    );
    expect((await w.poll()).sort()).toEqual(["if-gone", "lo-recreated"]);
    rmSync(path.join(root, "b"), { recursive: true });
    expect(await w.poll()).toEqual(["cg-b"]); // handler failed: retried next pass
    expect(await w.poll()).toEqual(["cg-b"]);
    expect(await w.poll()).toEqual([]);
    expect(gone.sort()).toEqual(["cg-b", "if-gone", "lo-recreated"]);
  });
});
