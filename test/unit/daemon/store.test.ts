import { afterEach, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { FileStateStore, MemoryStateStore, STATE_FILE } from "../../../daemon/src/store/state-store.js";
import { derivedDaemonId } from "../../../daemon/src/store/daemon-id.js";

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), "nf-store-"));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const snap = (id: string) => ({ version: 1 as const, daemonId: id, attachments: [] });

describe("FileStateStore", () => {
  it("round-trips a snapshot and returns null when there is none", async () => {
    const dir = path.join(tmp(), "nested", "state");
    const store = new FileStateStore(dir);
    expect(await store.load()).toBeNull();
    await store.save(snap("nfd-a"));
    await store.save(snap("nfd-b"));
    expect((await new FileStateStore(dir).load())?.daemonId).toBe("nfd-b");
    expect(readdirSync(dir)).toEqual([STATE_FILE]);
  });

  it("refuses a corrupt state file instead of starting empty", async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, STATE_FILE), "{\"version\":1,\"daemonId\":");
    await expect(new FileStateStore(dir).load()).rejects.toMatchObject({ code: "FAILED_PRECONDITION" });
  });

  it("survives kill -9 during writes: always a whole snapshot, never older than the last acknowledged one", async () => {
    const dir = tmp();
    const fixture = path.join(import.meta.dirname, "fixtures", "store-writer.ts");
    const viteNode = path.join(process.cwd(), "node_modules", ".bin", "vite-node");
    for (let round = 0; round < 4; round++) {
      const child = spawn(viteNode, [fixture, dir], { stdio: ["ignore", "pipe", "inherit"] });
      let acked = 0;
      let out = "";
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("writer made no progress within 30s")), 30_000);
        child.stdout.on("data", (b: Buffer) => {
          out += b.toString();
          const m = [...out.matchAll(/saved (\d+)\n/g)];
          if (m.length > 0) acked = Number(m.at(-1)![1]);
          // Kill at a different point of the write cycle each round.
          if (acked >= 3 + round * 2) {
            clearTimeout(timer);
            setTimeout(resolve, round * 3);
          }
        });
      });
      child.kill("SIGKILL");
      await exited;
      const loaded = await new FileStateStore(dir).load();
      expect(loaded).not.toBeNull();
      const n = Number(loaded!.daemonId.slice(4));
      expect(n).toBeGreaterThanOrEqual(acked);
      expect(loaded!.attachments).toHaveLength(1000 + (n % 2000));
      expect(readdirSync(dir)).toEqual([STATE_FILE]);
    }
  }, 120_000);
});

describe("MemoryStateStore and daemon ids", () => {
  it("keeps a private copy", async () => {
    const s = new MemoryStateStore();
    const value = { version: 1 as const, daemonId: "x", attachments: [] as never[] };
    await s.save(value);
    value.daemonId = "changed";
    expect((await s.load())?.daemonId).toBe("x");
  });

  it("derives a stable daemon id from the machine", () => {
    expect(derivedDaemonId()).toBe(derivedDaemonId());
    expect(derivedDaemonId()).toMatch(/^nfd-[0-9a-f]{16}$/);
  });
});
