import { afterEach, describe, expect, it } from "vitest";
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pino from "pino";
import { parseCidr } from "@netfence/proto/parse";
import { HISTORY_FILE, historyLine, readHistory } from "../../../daemon/src/history/history-file.js";
import { PolicyHistory } from "../../../daemon/src/history/policy-history.js";
import type { HistoryEntry } from "../../../daemon/src/history/history-entry.js";
import { commandSummary } from "../../../daemon/src/history/change-summary.js";
import { RuleIndex, indexRules } from "../../../daemon/src/policy/rule-index.js";
import { EMPTY_DNS_POLICY } from "../../../daemon/src/policy/policy.js";

const silent = pino({ level: "silent" });
const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(path.join(os.tmpdir(), "nf-history-"));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function entry(seq: number, over: Partial<HistoryEntry> = {}): HistoryEntry {
  return {
    seq, timeMs: 1_700_000_000_000 + seq, attachmentId: "nf-a", source: "control-plane", action: "set-mode",
    commandId: `c${seq}`, controlPlane: "127.0.0.1:1", summary: "mode allowlist→denylist", result: "applied", error: "", skipped: [], ...over,
  };
}

const open = (dir: string, maxEntries = 100, now = () => 1_700_000_100_000) =>
  PolicyHistory.open({ dir, maxEntries, maxAgeMs: 24 * 3600_000, logger: silent, now });

describe("history.journal (the file)", () => {
  it("reads every whole line and ignores a torn last line", () => {
    const text = historyLine(entry(1)) + historyLine(entry(2)) + historyLine(entry(3)).slice(0, 40);
    const r = readHistory(text);
    expect(r.entries.map((e) => e.seq)).toEqual([1, 2]);
    expect(r.tornBytes).toBe(40);
    expect(r.badLines).toBe(0);
  });

  it("skips a line whose checksum does not match and keeps the lines after it", () => {
    const bad = historyLine(entry(2)).replace("allowlist", "blocklist");
    const r = readHistory(historyLine(entry(1)) + bad + historyLine(entry(3)));
    expect(r.entries.map((e) => e.seq)).toEqual([1, 3]);
    expect(r.badLines).toBe(1);
  });

  it("cuts a torn tail off on open, so the next append starts on its own line; seq continues", async () => {
    const dir = tmp();
    const file = path.join(dir, HISTORY_FILE);
    writeFileSync(file, historyLine(entry(1)) + historyLine(entry(2)));
    appendFileSync(file, historyLine(entry(3)).slice(0, 25)); // a crash in the middle of an append
    const h = await open(dir);
    expect(h.query().map((e) => e.seq)).toEqual([1, 2]);
    const e = h.record({ attachmentId: "nf-b", source: "cli", action: "detach", summary: "veth0", result: "applied" });
    expect(e.seq).toBe(3);
    await h.close();
    const back = readHistory(readFileSync(file, "utf8"));
    expect(back.tornBytes).toBe(0);
    expect(back.badLines).toBe(0);
    expect(back.entries.map((x) => [x.seq, x.attachmentId])).toEqual([[1, "nf-a"], [2, "nf-a"], [3, "nf-b"]]);
  });
});

describe("PolicyHistory", () => {
  it("survives a reopen (a daemon restart) with every field", async () => {
    const dir = tmp();
    const h = await open(dir);
    h.record({ attachmentId: "nf-a", source: "control-plane", action: "allow-cidr", commandId: "cmd-1", controlPlane: "10.0.0.1:9000", summary: "allow +10.1.0.0/16", result: "applied", skipped: ["bad: 1.2.3.4/40"] });
    h.record({ attachmentId: "nf-a", source: "control-plane", action: "allow-cidr", commandId: "cmd-2", summary: "invalid command", result: "rejected", error: "bad CIDR" });
    await h.close();
    const again = await open(dir);
    const got = again.query();
    expect(got).toHaveLength(2);
    expect(got[0]).toMatchObject({ seq: 1, commandId: "cmd-1", controlPlane: "10.0.0.1:9000", result: "applied", skipped: ["bad: 1.2.3.4/40"] });
    expect(got[1]).toMatchObject({ seq: 2, commandId: "cmd-2", result: "rejected", error: "bad CIDR" });
    await again.close();
  });

  it("record returns before the disk write; flush makes it durable", async () => {
    const dir = tmp();
    const h = await open(dir);
    h.record({ attachmentId: "nf-a", source: "cli", action: "attach", summary: "x", result: "applied" });
    // Nothing written yet in this turn of the event loop.
    expect(readFileSync(path.join(dir, HISTORY_FILE), "utf8")).toBe("");
    await h.flush();
    expect(readHistory(readFileSync(path.join(dir, HISTORY_FILE), "utf8")).entries).toHaveLength(1);
    await h.close();
  });

  it("keeps at most max_entries: the file is rewritten before it reaches 1.5x, the newest kept", async () => {
    const dir = tmp();
    const max = 20;
    const h = await open(dir, max);
    for (let i = 0; i < 200; i++) {
      h.record({ attachmentId: `nf-${i % 3}`, source: "cli", action: "set-mode", summary: `#${i}`, result: "applied" });
      if (i % 7 === 0) await h.flush();
      const lines = readHistory(readFileSync(path.join(dir, HISTORY_FILE), "utf8")).entries.length;
      expect(lines).toBeLessThanOrEqual(max + Math.max(50, max >> 1));
    }
    await h.flush();
    expect(h.query().map((e) => e.summary)).toEqual(Array.from({ length: max }, (_, k) => `#${180 + k}`));
    await h.close();
    const again = await open(dir, max);
    const kept = again.query();
    expect(kept).toHaveLength(max);
    expect(kept[kept.length - 1]!.summary).toBe("#199");
    expect(kept.map((e) => e.seq)).toEqual([...kept.map((e) => e.seq)].sort((a, b) => a - b));
    await again.close();
  });

  it("drops entries older than max_age, and filters by attachment, since and limit", async () => {
    let now = 1_000_000;
    const h = await PolicyHistory.open({ dir: null, maxEntries: 100, maxAgeMs: 60_000, logger: silent, now: () => now });
    h.record({ attachmentId: "nf-old", source: "cli", action: "attach", summary: "old", result: "applied" });
    now += 50_000;
    for (let i = 0; i < 5; i++) h.record({ attachmentId: i % 2 === 0 ? "nf-a" : "nf-b", source: "cli", action: "set-mode", summary: `${i}`, result: "applied" });
    now += 20_000; // the first entry is now 70 s old
    expect(h.query().map((e) => e.summary)).toEqual(["0", "1", "2", "3", "4"]);
    expect(h.query({ attachmentId: "nf-a" }).map((e) => e.summary)).toEqual(["0", "2", "4"]);
    expect(h.query({ limit: 2 }).map((e) => e.summary)).toEqual(["3", "4"]);
    expect(h.query({ sinceMs: now + 1 })).toEqual([]);
    await h.close();
  });

  it("folds DNS-learned changes into one entry per attachment per period, never one per address", async () => {
    const seen: HistoryEntry[] = [];
    const h = await PolicyHistory.open({ dir: null, maxEntries: 100, maxAgeMs: 60_000, logger: silent, onRecord: (e) => seen.push(e), dnsAggregateMs: 3_600_000 });
    for (let i = 0; i < 500; i++) h.dnsLearned.note("nf-a", [`n${i}.example.com`], 2, i % 100 === 0 ? [{ reason: "quota", count: 1 }] : []);
    h.dnsLearned.note("nf-b", ["x.example.org"], 0, [{ reason: "deny-cidr", count: 3 }]);
    expect(seen).toEqual([]);
    h.dnsLearned.flush();
    expect(seen).toHaveLength(2);
    expect(seen[0]).toMatchObject({ attachmentId: "nf-a", source: "dns-learned", result: "applied" });
    expect(seen[0]!.summary).toMatch(/^\+1000 addresses opened or extended from n0\.example\.com, n1\.example\.com, n2\.example\.com, … 500 names; 5 refused \(quota 5\)$/);
    expect(seen[1]).toMatchObject({ attachmentId: "nf-b", result: "rejected" });
    await h.close();
  });
});

describe("change summaries", () => {
  const rule = (c: string) => ({ cidr: parseCidr(c), expiresAtMs: null });
  const before = {
    mode: "allowlist" as const, audit: false, dns: EMPTY_DNS_POLICY,
    rules: new RuleIndex(indexRules([rule("10.0.0.0/8"), rule("192.168.1.0/24")], [rule("10.9.0.0/16")])),
  };

  it("a BulkUpdate is a diff: +N/-M per side with the first few shown", () => {
    const s = commandSummary(
      { kind: "bulk-update", mode: "denylist", audit: false, allowCidrs: [rule("10.0.0.0/8"), rule("172.16.0.0/12")], denyCidrs: [], dns: null },
      before,
    );
    expect(s).toBe("mode allowlist→denylist; allow +1/-1 (+172.16.0.0/12, -192.168.1.0/24); deny +0/-1 (-10.9.0.0/16); dns rules kept");
  });

  it("the diff against the installed rule index (no formatting) says the same", () => {
    const command = { kind: "bulk-update" as const, mode: "denylist" as const, audit: false, allowCidrs: [rule("10.0.0.0/8"), rule("172.16.0.0/12")], denyCidrs: [], dns: null };
    const after = new RuleIndex(indexRules(command.allowCidrs, command.denyCidrs));
    expect(commandSummary(command, before, after)).toBe(commandSummary(command, before));
    const many = Array.from({ length: 1000 }, (_, i) => rule(`10.${i >> 8}.${i & 255}.0/24`));
    const big = { ...command, allowCidrs: many };
    expect(commandSummary(big, before, new RuleIndex(indexRules(many, [])))).toBe(commandSummary(big, before));
    expect(commandSummary(big, before)).toMatch(/^mode allowlist→denylist; allow \+1000\/-2 \(\+10\.0\.0\.0\/24, \+10\.0\.1\.0\/24, \+10\.0\.2\.0\/24, -10\.0\.0\.0\/8, -192\.168\.1\.0\/24, …\); deny \+0\/-1/);
  });

  it("single commands", () => {
    expect(commandSummary({ kind: "set-mode", mode: "block-all", audit: null }, before)).toBe("mode allowlist→block-all");
    expect(commandSummary({ kind: "deny-cidr", rule: rule("1.2.3.4/32") }, before)).toBe("deny +1.2.3.4/32");
    expect(commandSummary({ kind: "allow-domain", rule: { domain: "example.com", includeSubdomains: true } }, before)).toBe("allow domain +*.example.com");
  });
});
