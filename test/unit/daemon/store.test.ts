import { afterEach, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import type { NetfenceError } from "@netfence/proto/errors";
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

  it("moves a corrupt state file aside (truncated, garbage, wrong version) and reports it", async () => {
    for (const text of ["{\"version\":1,\"daemonId\":", "\u0000garbage\n", JSON.stringify({ version: 7, daemonId: "x", attachments: [] }), JSON.stringify({ version: 1, daemonId: "x", attachments: [{ id: 3 }] })]) {
      const dir = tmp();
      writeFileSync(path.join(dir, STATE_FILE), text);
      const store = new FileStateStore(dir);
      expect(await store.load()).toBeNull();
      expect(store.warnings).toHaveLength(1);
      expect(store.warnings[0]).toMatch(/was corrupt .*moved aside to .*state\.json\.corrupt-/);
      const aside = readdirSync(dir).filter((n) => n.startsWith(`${STATE_FILE}.corrupt-`));
      expect(aside).toHaveLength(1);
      expect(readFileSync(path.join(dir, aside[0]!), "utf8")).toBe(text);
      expect(existsSync(path.join(dir, STATE_FILE))).toBe(false);
    }
  });

  it("a failed write names the cause (ENOSPC on a full disk, EACCES, …) and leaves no temp file", async () => {
    const dir = tmp();
    const store = new FileStateStore(path.join(dir, "missing", "deeper"));
    const err = await store.save({ version: 1, daemonId: "x", attachments: [] }).then(() => null, (e: unknown) => e as NetfenceError);
    expect(err?.message).toMatch(/cannot write state file .*state\.json: ENOENT: no such file or directory/);
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
