import { describe, expect, it } from "vitest";
import { crcHex, journalHeader, journalSaveLine, replayJournal } from "../../../daemon/src/store/journal.js";
import type { StoreSnapshot, StoredAttachment } from "../../../daemon/src/store/snapshot.js";

// The journal's unit of replay is one save. A SIGKILL can cut a write() of several pages short; a
// save whose records were separate lines then replayed the whole lines before the cut — half a save
// (store.test.ts's kill -9 test caught it once in CI: one attachment at version 20, the rest at 19).
// Now a save is one line under one checksum: cut anywhere, nothing of it is applied.

const att = (id: string, version: number): StoredAttachment => ({
  id, slot: 1, target: { kind: "cgroup", path: `/sys/fs/cgroup/${id}` }, targetText: id, dnsPort: 0, metadata: { version: String(version) },
  attachedAtMs: 0, method: "cgroup-link", ifindex: 0, policy: { mode: "allowlist", audit: false, allowCidrs: [], denyCidrs: [], dns: null } as unknown as StoredAttachment["policy"], learned: [],
});
const base: StoreSnapshot = { version: 1, daemonId: "nfd-j", attachments: [att("a", 1), att("b", 1), att("c", 1)] };
const versions = (s: StoreSnapshot): string => s.attachments.map((a) => `${a.id}${a.metadata["version"]}`).sort().join(" ");

describe("state journal: a save replays whole or not at all", () => {
  it("a save cut at any byte changes nothing; whole, all of it; an earlier whole save stays", () => {
    const first = journalSaveLine([`{"put":${JSON.stringify(att("a", 2))}}`]);
    // A save over several 4 KiB pages: b and c at version 3, a deleted.
    const big = { ...att("b", 3), metadata: { version: "3", pad: "x".repeat(6000) } };
    const second = journalSaveLine([`{"put":${JSON.stringify(big)}}`, `{"put":${JSON.stringify(att("c", 3))}}`, JSON.stringify({ del: "a" })]);
    const head = journalHeader(7) + first;
    for (let cut = 0; cut < second.length; cut += 97) {
      const r = replayJournal(base, 7, head + second.slice(0, cut));
      expect(versions(r.snapshot), `cut at ${cut}`).toBe("a2 b1 c1");
    }
    expect(versions(replayJournal(base, 7, head + second).snapshot)).toBe("b3 c3");
  });

  it("reads the one-record lines of a journal written before, and ignores a journal of another generation", () => {
    const old = (json: string): string => `${crcHex(json)} ${json}\n`;
    const text = journalHeader(3) + old(`{"put":${JSON.stringify(att("b", 5))}}`) + old(JSON.stringify({ del: "c" }));
    expect(versions(replayJournal(base, 3, text).snapshot)).toBe("a1 b5");
    expect(versions(replayJournal(base, 4, text).snapshot)).toBe("a1 b1 c1");
  });

  it("a save line holding something that is not a record is not applied (nor anything after it)", () => {
    const bad = `{"save":[{"put":${JSON.stringify(att("a", 9))}},{"nope":1}]}`;
    const text = journalHeader(1) + `${crcHex(bad)} ${bad}\n` + journalSaveLine([`{"put":${JSON.stringify(att("b", 9))}}`]);
    expect(versions(replayJournal(base, 1, text).snapshot)).toBe("a1 b1 c1");
  });
});
