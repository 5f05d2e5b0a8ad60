/**
 * State store with 100k DNS-learned addresses (issue 10: "a restart with 100k learned addresses
 * stays fast"): save time, file size and load time of the old form (one JSON object per address)
 * and the packed form (attachments/learned-store.ts), in the same run, through the real
 * FileStateStore (write, fsync, rename) and the real restore path (JSON parse + rebuilding the
 * LearnedAddresses index). Usage (after `npm run build`):
 *
 *   node dist/bench/store/learned-store-bench.js [--addresses 100000] [--names 3000] [--rounds 5] [--out FILE]
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { FileStateStore, STATE_FILE } from "../../daemon/src/store/state-store.js";
import type { StoreSnapshot, StoredAttachment } from "../../daemon/src/store/snapshot.js";
import { LearnedAddresses } from "../../daemon/src/policy/learned-addresses.js";
import { learnedFromStored, packLearned } from "../../daemon/src/attachments/learned-store.js";
import { parseCidr } from "@netfence/proto/parse";
import { projectRoot } from "../../daemon/src/datapath/project-root.js";
import { machineInfo } from "../lib/machine.js";
import { median, round } from "../lib/stats.js";
import { Prng } from "../lib/prng.js";

function args(argv: string[]): { addresses: number; names: number; rounds: number; out: string } {
  const a = { addresses: 100_000, names: 3000, rounds: 5, out: path.join(projectRoot(), "bench", "results", "store.json") };
  for (let i = 0; i < argv.length; i += 2) {
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`${argv[i]} needs a value`);
    if (argv[i] === "--addresses") a.addresses = Number(v);
    else if (argv[i] === "--names") a.names = Number(v);
    else if (argv[i] === "--rounds") a.rounds = Number(v);
    else if (argv[i] === "--out") a.out = path.resolve(v);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return a;
}

function learnedSet(n: number, names: number): LearnedAddresses {
  const rng = new Prng(7);
  const l = new LearnedAddresses();
  const now = Date.now();
  for (let i = 0; i < n; i++) {
    const v6 = i % 10 === 9; // one in ten IPv6, as a dual-stack CDN answer mix
    const addr = v6 ? `2001:db8:${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}::${(rng.u32() & 0xffff).toString(16)}` : `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    l.add(`edge-${i % names}.cdn.example.net`, parseCidr(addr), now + 60_000 + rng.int(0, 3_600_000));
  }
  return l;
}

function attachment(learned: StoredAttachment["learned"], learnedPacked: StoredAttachment["learnedPacked"]): StoredAttachment {
  return {
    id: "nf-bench0000001", slot: 1, target: { kind: "cgroup", path: "/sys/fs/cgroup/bench" }, targetText: "bench", dnsPort: 11000,
    metadata: {}, attachedAtMs: Date.now(), method: "cgroup-link", ifindex: 0,
    policy: { mode: "allowlist", audit: false, allowCidrs: [], denyCidrs: [], dns: { mode: "denylist", allowDomains: [], denyDomains: [], upstreams: [] } },
    learned,
    ...(learnedPacked === undefined ? {} : { learnedPacked }),
  };
}

interface FormResult { saveMs: number; loadMs: number; buildSnapshotMs: number; fileBytes: number }

async function measure(form: "old" | "packed", learned: LearnedAddresses, rounds: number): Promise<FormResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "nf-store-bench-"));
  try {
    const store = new FileStateStore(dir);
    const save: number[] = [];
    const load: number[] = [];
    const build: number[] = [];
    let bytes = 0;
    for (let r = 0; r < rounds; r++) {
      let t = performance.now();
      // What the manager does on every save: the attachment's stored form from its live state.
      const stored = form === "old"
        ? attachment([...learned.keyed()].map((x) => ({ name: x.name, address: x.key, expiresAtMs: x.expiresAtMs })), undefined)
        : attachment([], packLearned(learned));
      const snapshot: StoreSnapshot = { version: 1, daemonId: "nfd-bench", attachments: [stored] };
      build.push(performance.now() - t);
      t = performance.now();
      await store.save(snapshot);
      save.push(performance.now() - t);
      bytes = statSync(path.join(dir, STATE_FILE)).size;
      t = performance.now();
      const loaded = await store.load();
      const restored = learnedFromStored(loaded!.attachments[0]!);
      load.push(performance.now() - t);
      if (restored.size !== learned.size) throw new Error(`${form}: restored ${restored.size} of ${learned.size}`);
    }
    return { saveMs: round(median(save), 1), loadMs: round(median(load), 1), buildSnapshotMs: round(median(build), 1), fileBytes: bytes };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const a = args(process.argv.slice(2));
  const learned = learnedSet(a.addresses, a.names);
  const old = await measure("old", learned, a.rounds);
  const packed = await measure("packed", learned, a.rounds);
  const doc = {
    benchmark: "learned-store",
    machine: machineInfo(),
    addresses: learned.size,
    names: a.names,
    rounds: a.rounds,
    old: { ...old, note: "one {name, address, expiresAtMs} object per address (the form before issue 10)" },
    packed: { ...packed, note: "columnar: names once, base64 uint16 name index, 4/16-byte addresses, uint32 seconds after the earliest deadline" },
    ratio: { size: round(old.fileBytes / packed.fileBytes, 2), save: round(old.saveMs / packed.saveMs, 2), load: round(old.loadMs / packed.loadMs, 2) },
  };
  writeFileSync(a.out, `${JSON.stringify(doc, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
}

await main();
