import { afterEach, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { NetfenceError } from "@netfence/proto/errors";
import os from "node:os";
import path from "node:path";
import { FileStateStore, JOURNAL_FILE, MemoryStateStore, STATE_FILE } from "../../../daemon/src/store/state-store.js";
import { expectedAfter, journalAttachment } from "./fixtures/journal-schedule.js";
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
    expect(readdirSync(dir).sort()).toEqual([STATE_FILE, JOURNAL_FILE].sort());
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
      expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    }
  }, 120_000);
});

describe("FileStateStore journal (what changed, not the whole state)", () => {
  const base = () => Array.from({ length: 301 }, (_, i) => journalAttachment(i, 0));
  const snapOf = (attachments: ReturnType<typeof base>) => ({ version: 1 as const, daemonId: "nfd-j", attachments });
  const stateBytes = (dir: string) => readFileSync(path.join(dir, STATE_FILE)).length;

  it("appends only the changed and removed attachments, and reads back exactly what was saved", async () => {
    const dir = tmp();
    const store = new FileStateStore(dir);
    expect(await store.load()).toBeNull();
    const all = base();
    await store.save(snapOf(all));
    const full = store.bytesWritten;
    expect(full).toBeGreaterThan(stateBytes(dir)); // the base plus the journal header
    all[5] = journalAttachment(5, 1);
    await store.save(snapOf(all));
    const one = store.bytesWritten - full;
    expect(one).toBeGreaterThan(JSON.stringify(all[5]).length);
    expect(one).toBeLessThan(JSON.stringify(all[5]).length + 40);
    await store.save(snapOf(all)); // nothing changed: nothing written
    expect(store.bytesWritten - full).toBe(one);
    const gone = all.splice(7, 1)[0]!;
    await store.save(snapOf(all));
    expect(readFileSync(path.join(dir, JOURNAL_FILE), "utf8")).toContain(`{"del":"${gone.id}"}`);
    expect(store.compactions).toBe(1);
    const loaded = await new FileStateStore(dir).load();
    expect(loaded).toEqual(snapOf(all));
  });

  it("compacts when the journal would outgrow the state: a run of saves writes at most ~2x what changed plus the state", async () => {
    const dir = tmp();
    const store = new FileStateStore(dir);
    await store.load();
    const all = base();
    await store.save(snapOf(all));
    const start = store.bytesWritten;
    let changedBytes = 0;
    for (let n = 1; n <= 120; n++) {
      for (let k = 0; k < 25; k++) {
        const i = (n * 25 + k) % 301;
        all[i] = journalAttachment(i, n);
        changedBytes += JSON.stringify(all[i]).length;
      }
      await store.save(snapOf(all));
      expect(statSync(path.join(dir, JOURNAL_FILE)).size).toBeLessThanOrEqual(Math.max(stateBytes(dir), 256 * 1024) + 40 * 25 * 60);
    }
    expect(store.compactions).toBeGreaterThan(3);
    expect(store.bytesWritten - start).toBeLessThan(2 * changedBytes + stateBytes(dir));
    expect(await new FileStateStore(dir).load()).toEqual(snapOf(all));
  });

  it("ignores a torn last append (the state of the save before it) and a journal older than the base", async () => {
    const dir = tmp();
    const store = new FileStateStore(dir);
    await store.load();
    const all = base();
    await store.save(snapOf(all));
    all[3] = journalAttachment(3, 1);
    await store.save(snapOf(all));
    const before = structuredClone(snapOf(all));
    const journal = path.join(dir, JOURNAL_FILE);
    const good = readFileSync(journal);
    all[4] = journalAttachment(4, 2);
    await store.save(snapOf(all));
    const whole = readFileSync(journal);
    for (const cut of [good.length + 1, good.length + 9, whole.length - 1]) {
      writeFileSync(journal, whole.subarray(0, cut));
      const s = new FileStateStore(dir);
      expect(await s.load()).toEqual(before);
      expect(s.warnings.join()).toMatch(/ignored the last \d+ bytes/);
    }
    // A flipped byte inside the last record: its checksum no longer matches.
    const flipped = Buffer.from(whole);
    flipped[whole.length - 20] = flipped[whole.length - 20]! ^ 1;
    writeFileSync(journal, flipped);
    expect(await new FileStateStore(dir).load()).toEqual(before);
    // The journal of the previous generation beside a newer base (a crash between the two renames of a compaction).
    writeFileSync(journal, whole);
    const s2 = new FileStateStore(dir);
    await s2.load();
    await s2.save(snapOf(all)); // first save of a process: a new base, generation + 1
    writeFileSync(journal, whole);
    expect(await new FileStateStore(dir).load()).toEqual(snapOf(all));
  });

  it("survives kill -9 during appends and compactions: exactly the state of a save, never older than the last acknowledged one", async () => {
    const dir = tmp();
    const fixture = path.join(import.meta.dirname, "fixtures", "journal-writer.ts");
    const viteNode = path.join(process.cwd(), "node_modules", ".bin", "vite-node");
    let lastAcked = 0;
    for (let round = 0; round < 6; round++) {
      const child = spawn(viteNode, [fixture, dir], { stdio: ["ignore", "pipe", "inherit"] });
      let acked = lastAcked;
      let out = "";
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("writer made no progress within 30s")), 30_000);
        let first: number | null = null;
        child.stdout.on("data", (b: Buffer) => {
          out += b.toString();
          const m = [...out.matchAll(/saved (\d+)\n/g)];
          if (m.length > 0) acked = Number(m.at(-1)![1]);
          first ??= acked;
          // Kill at a different point each round (some rounds right after the start-up compaction).
          if (acked >= first + round * 5) {
            clearTimeout(timer);
            setTimeout(resolve, (round * 7) % 5);
          }
        });
      });
      const ackedAtKill = acked;
      const drained = new Promise<void>((r) => child.stdout.once("end", () => r()));
      child.kill("SIGKILL");
      await exited;
      // Saves the child acknowledged after our last read but before the kill are in the pipe: read
      // them all, so `acked` is the child's last acknowledged save (a loaded machine lags the reads).
      await drained;
      const loaded = await new FileStateStore(dir).load();
      const k = Number(loaded!.attachments.find((a) => a.slot === 301)!.metadata["version"]);
      expect(k).toBeGreaterThanOrEqual(ackedAtKill);
      expect(k === acked || k === acked + 1).toBe(true);
      expect(loaded).toEqual({ ...expectedAfter(k), daemonId: "nfd-journal" });
      lastAcked = k;
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
