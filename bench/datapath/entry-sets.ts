import type { FilterEntry } from "../../daemon/src/datapath/filter.js";
import type { Cidr } from "@netfence/proto/parse";
import { Prng } from "../lib/prng.js";

/**
 * Synthetic allowlists for the data-path benchmarks, deterministic per seed.
 *
 * A set of `n` entries of one family: `hostShare` of them single hosts (/32, /128 — what DNS
 * learning produces), the rest prefixes of random length (IPv4 /16–/30, IPv6 /32–/64) at random
 * places in public unicast space (IPv4 first octet 11–126 or 128–223, so never 10/8 where the
 * sandbox lives, nor loopback or multicast; IPv6 inside 2000::/3). IPv4 sets are disjoint (no
 * entry inside another), so they load into an nftables interval set unchanged; IPv6 sets are
 * disjoint with overwhelming probability (random 64-bit prefixes), and the probe addresses are
 * checked exactly.
 *
 * Probe addresses, each verified against the whole set:
 *   hostHit   — a host entry (exact /32 or /128 match)
 *   prefixHit — inside a prefix entry and not itself a host entry
 *   miss      — covered by no entry
 */
export interface EntrySet {
  readonly family: 4 | 6;
  readonly entries: readonly FilterEntry[];
  readonly hosts: number;
  readonly prefixes: number;
  readonly hostHit: Uint8Array;
  readonly prefixHit: Uint8Array;
  readonly miss: Uint8Array;
}

export interface EntrySetOptions {
  readonly hostShare?: number;
  /** CIDRs to put first (e.g. the benchmark server's /32); they count towards n. */
  readonly include?: readonly Cidr[];
}

const V4_PREFIX_MIN = 16;
const V4_PREFIX_MAX = 30;
const V6_PREFIX_MIN = 32;
const V6_PREFIX_MAX = 64;

export function makeEntrySet(family: 4 | 6, n: number, seed: number, opts: EntrySetOptions = {}): EntrySet {
  return family === 4 ? makeV4(n, seed, opts) : makeV6(n, seed, opts);
}

function entry(cidr: Cidr, ruleId: number): FilterEntry {
  return { cidr, allow: true, deny: false, expiresAtMs: null, ruleId };
}

// ------------------------------------------------------------------ IPv4 (numeric, disjoint)

const V4_LENGTHS = [...Array.from({ length: V4_PREFIX_MAX - V4_PREFIX_MIN + 1 }, (_, i) => V4_PREFIX_MIN + i), 32];

function mask4(a: number, len: number): number {
  return len === 0 ? 0 : (a & (0xffffffff << (32 - len))) >>> 0;
}
function key4(a: number, len: number): number {
  return mask4(a, len) * 64 + len;
}
function bytes4(a: number): Uint8Array {
  return Uint8Array.of(a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff);
}
function num4(b: Uint8Array): number {
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}
function randomPublic4(rng: Prng): number {
  for (;;) {
    const a = rng.u32();
    const first = a >>> 24;
    if (first >= 11 && first <= 223 && first !== 127) return a;
  }
}

function makeV4(n: number, seed: number, opts: EntrySetOptions): EntrySet {
  const rng = new Prng(seed);
  const present = new Set<number>(); // key4 of every entry
  const inner = new Set<number>(); // key4(mask(e, L), L) for every entry e and every shorter used length L
  const entries: FilterEntry[] = [];
  const hostList: number[] = [];
  const prefixList: Array<[number, number]> = [];
  const covered = (a: number, len: number): boolean => {
    for (const L of V4_LENGTHS) if (L <= len && present.has(key4(a, L))) return true;
    return false;
  };
  const add = (a: number, len: number): boolean => {
    a = mask4(a, len);
    if (covered(a, len) || inner.has(key4(a, len))) return false;
    present.add(key4(a, len));
    for (const L of V4_LENGTHS) if (L < len) inner.add(key4(a, L));
    entries.push(entry({ family: 4, addr: bytes4(a), prefixLen: len }, entries.length + 1));
    if (len === 32) hostList.push(a);
    else prefixList.push([a, len]);
    return true;
  };
  for (const c of opts.include ?? []) {
    if (c.family !== 4 || (c.prefixLen !== 32 && (c.prefixLen < V4_PREFIX_MIN || c.prefixLen > V4_PREFIX_MAX))) {
      throw new RangeError(`included CIDR must be IPv4 /32 or /${V4_PREFIX_MIN}–/${V4_PREFIX_MAX}`);
    }
    if (!add(num4(c.addr), c.prefixLen)) throw new RangeError("included CIDRs overlap");
  }
  const hostTarget = Math.round(n * (opts.hostShare ?? 0.5));
  for (let guard = 0; entries.length < n; guard++) {
    if (guard > n * 100) throw new Error(`cannot generate ${n} disjoint IPv4 entries`);
    const wantHost = hostList.length < hostTarget && (prefixList.length >= n - hostTarget || rng.u32() % 2 === 0);
    add(randomPublic4(rng), wantHost ? 32 : rng.int(V4_PREFIX_MIN, V4_PREFIX_MAX));
  }
  if (!hostList.length || !prefixList.length) throw new RangeError("an entry set needs at least one host and one prefix");
  const hostHit = hostList[hostList.length >> 1]!;
  const [pa] = prefixList[prefixList.length >> 1]!;
  const prefixHit = (pa | 1) >>> 0; // inside the prefix (length <= 30), never a host entry (disjoint)
  let miss = 0;
  for (let guard = 0; ; guard++) {
    if (guard > 100000) throw new Error("cannot find an IPv4 address outside the set");
    const a = randomPublic4(rng);
    if (!covered(a, 32)) {
      miss = a;
      break;
    }
  }
  return { family: 4, entries, hosts: hostList.length, prefixes: prefixList.length, hostHit: bytes4(hostHit), prefixHit: bytes4(prefixHit), miss: bytes4(miss) };
}

// ------------------------------------------------------------------ IPv6 (bytes)

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}
function randomPublic6(rng: Prng): Uint8Array {
  const a = rng.bytes(16);
  a[0] = 0x20 | (a[0]! & 0x1f); // 2000::/3
  return a;
}
function masked6(a: Uint8Array, len: number): Uint8Array {
  const out = Uint8Array.from(a);
  for (let i = 0; i < 16; i++) {
    const bits = Math.max(0, Math.min(8, len - i * 8));
    out[i] = out[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return out;
}
function within6(a: Uint8Array, p: Uint8Array, len: number): boolean {
  return hex(masked6(a, len)) === hex(p);
}

function makeV6(n: number, seed: number, opts: EntrySetOptions): EntrySet {
  const rng = new Prng(seed ^ 0x5bd1e995);
  const seen = new Set<string>();
  const entries: FilterEntry[] = [];
  const hostList: Uint8Array[] = [];
  const prefixList: Array<[Uint8Array, number]> = [];
  const add = (a: Uint8Array, len: number): void => {
    const m = masked6(a, len);
    const k = `${hex(m)}/${len}`;
    if (seen.has(k)) return;
    seen.add(k);
    entries.push(entry({ family: 6, addr: m, prefixLen: len }, entries.length + 1));
    if (len === 128) hostList.push(m);
    else prefixList.push([m, len]);
  };
  for (const c of opts.include ?? []) add(c.addr, c.prefixLen);
  const hostTarget = Math.round(n * (opts.hostShare ?? 0.5));
  while (entries.length < n) {
    const wantHost = hostList.length < hostTarget && (prefixList.length >= n - hostTarget || rng.u32() % 2 === 0);
    add(randomPublic6(rng), wantHost ? 128 : rng.int(V6_PREFIX_MIN, V6_PREFIX_MAX));
  }
  if (!hostList.length || !prefixList.length) throw new RangeError("an entry set needs at least one host and one prefix");
  const hostSet = new Set(hostList.map(hex));
  const coveredByPrefix = (a: Uint8Array): boolean => prefixList.some(([p, len]) => within6(a, p, len));
  const hostHit = hostList[hostList.length >> 1]!;
  if (coveredByPrefix(hostHit)) throw new Error("IPv6 host probe lies inside a prefix entry; change the seed");
  const [pa] = prefixList[prefixList.length >> 1]!;
  const prefixHit = Uint8Array.from(pa);
  prefixHit[15] = 1;
  if (hostSet.has(hex(prefixHit))) throw new Error("IPv6 prefix probe is a host entry; change the seed");
  let miss: Uint8Array | null = null;
  for (let guard = 0; guard < 1000 && !miss; guard++) {
    const a = randomPublic6(rng);
    if (!hostSet.has(hex(a)) && !coveredByPrefix(a)) miss = a;
  }
  if (!miss) throw new Error("cannot find an IPv6 address outside the set");
  return { family: 6, entries, hosts: hostList.length, prefixes: prefixList.length, hostHit, prefixHit, miss };
}
