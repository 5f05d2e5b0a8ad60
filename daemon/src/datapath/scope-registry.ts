/**
 * The scope sets of one attachment, per generation (issue 15): content -> id, id -> blocks, prefix
 * -> id, so that
 *   - a REPLACE compiles a whole new generation (ids 1.. in order of first use),
 *   - an UPSERT into the ACTIVE generation (a learned address) reuses the id of an equal set or
 *     allocates a new one, and returns the scope entries to add and those of sets no prefix uses
 *     any more (to delete),
 *   - a DELETE of address entries returns the scope entries that became unused.
 * Every change is a plan: nothing in the registry changes until the driver has written the plan
 * and calls commit(); ids a plan allocated are never handed out again in this generation even if
 * the plan is dropped (its writes may have reached the kernel in part). Ids of removed sets are
 * reused only after released() (the driver wrote their DELETE).
 *
 * Bounds (checked before anything is written, RESOURCE_EXHAUSTED): 65535 ids per generation, and
 * SCOPE_GEN_CAP = NF_SCOPE_CAP / 2 = 32768 scope entries per generation — the trie holds the active
 * generation while the next one is written, so any policy that was accepted can be replaced by any
 * other accepted one.
 * Driver sequence (KernelFilter, lane K; scope-wire.ts encodeScopeWire serialises ScopeWireEntry[]):
 *   REPLACE  p = registry.replace(entries, now); replaceCompiled(id, policy, p.entries, enc(p.scopeWire)); p.commit()
 *   UPSERT   p = registry.upsert(entries, now);  upsertCompiled(id, p.entries, enc(p.scopeWire)); p.commit();
 *            deleteCompiled(id, [], enc(p.scopeRemove)); p.released()
 *   DELETE   p = registry.delete(cidrs); deleteCompiled(id, cidrs, new Uint8Array()); p.commit();
 *            deleteCompiled(id, [], enc(p.scopeRemove)); p.released()
 * (the frames carry the scope entries before the address entries). After adopting pins written by
 * another daemon run: markUnknown() until the first REPLACE.
 */
import { NetfenceError } from "@netfence/proto/errors";
import type { Cidr } from "@netfence/proto/parse";
import type { FilterEntry } from "../policy/compiled.js";
import { compileScopeSet, prepareEntry, withScope, type CompiledScopeSet, type WireEntry } from "./scope-compile.js";
import { SCOPE_CAP, SCOPE_ID_MAX, type ScopeWireEntry } from "./scope-wire.js";

export const SCOPE_GEN_CAP = SCOPE_CAP / 2;

interface SetState {
  readonly id: number;
  /** The set without its blocks (`wire` has them with the id; not keeping both halves the retained objects). */
  readonly set: Omit<CompiledScopeSet, "blocks">;
  readonly wire: readonly ScopeWireEntry[];
  refs: number;
}

class Generation {
  readonly byKey = new Map<string, SetState>();
  readonly byId = new Map<number, SetState>();
  readonly byPrefix = new Map<string, number>();
  count = 0;
  nextFresh = 1;
  readonly free: number[] = [];

  /** The id allocate() would return now (compile with it, allocate only if the set has blocks). */
  peek(): number {
    return this.free.length > 0 ? this.free[this.free.length - 1]! : this.nextFresh;
  }

  allocate(): number {
    const reused = this.free.pop();
    if (reused !== undefined) return reused;
    if (this.nextFresh > SCOPE_ID_MAX) {
      throw new NetfenceError("RESOURCE_EXHAUSTED", `more than ${SCOPE_ID_MAX} different rule scopes in one policy generation; replace the policy to compact them`);
    }
    return this.nextFresh++;
  }
}

/** What one change writes; call commit() once it is written (and released() after scopeRemove is deleted). */
export interface ScopePlan {
  /** The address entries, same order as given, with scopeId/scopeKinds where scoped. */
  readonly entries: readonly WireEntry[];
  /** Scope entries to write before the address entries. */
  readonly scopeWire: readonly ScopeWireEntry[];
  /** Scope entries of sets no prefix uses any more: delete after the address entries are written. */
  readonly scopeRemove: readonly ScopeWireEntry[];
  /** Earliest time a block's deny expires before an allow it holds (re-push then); null = never. */
  readonly repushAtMs: number | null;
  /** Scope entries the generation holds once committed and released. */
  readonly scopeEntries: number;
  commit(): void;
  released(): void;
}

export function prefixKey(c: Cidr): string {
  const a = c.addr;
  if (c.family === 4) return `${c.prefixLen}/${((a[0]! << 24) | (a[1]! << 16) | (a[2]! << 8) | a[3]!) >>> 0}`;
  let hex = "";
  for (let i = 0; i < a.length; i++) hex += (a[i]! < 16 ? "0" : "") + a[i]!.toString(16);
  return `6/${c.prefixLen}/${hex}`;
}

const minDeadline = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.min(a, b));

function exhausted(n: number): NetfenceError {
  return new NetfenceError(
    "RESOURCE_EXHAUSTED",
    `the rule scopes need ${n} scope-table entries, more than the ${SCOPE_GEN_CAP} one policy generation may use (NF_SCOPE_CAP ${SCOPE_CAP} holds two); use fewer port ranges, users or groups per rule`,
    { details: { needed: n, cap: SCOPE_GEN_CAP } },
  );
}

export class ScopeRegistry {
  private active: Generation | null = null;
  /** False after adoption: the kernel's active generation has ids this registry did not assign. */
  private known = true;

  /** After adopting pins written by another daemon: UPSERTs of scoped entries wait for a REPLACE. */
  markUnknown(): void {
    this.active = null;
    this.known = false;
  }

  /** Scope entries in the active generation. */
  get scopeEntries(): number {
    return this.active?.count ?? 0;
  }

  /** Earliest re-push time over the active generation's sets (null = none). */
  repushAtMs(): number | null {
    let at: number | null = null;
    for (const s of this.active?.byId.values() ?? []) if (s.refs > 0) at = minDeadline(at, s.set.repushAtMs);
    return at;
  }

  /** A whole new generation (REPLACE): ids from 1, sets deduplicated by content. */
  replace(entries: readonly FilterEntry[], nowMs: number): ScopePlan {
    const gen = new Generation();
    const out: WireEntry[] = new Array<WireEntry>(entries.length);
    const scopeWire: ScopeWireEntry[] = [];
    let repush: number | null = null;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (!e.scoped || e.scoped.length === 0) {
        out[i] = e;
        continue;
      }
      const p = prepareEntry(e, nowMs);
      let s = p.rules ? gen.byKey.get(p.key) : undefined;
      if (p.rules && !s) {
        const set = compileScopeSet(p.rules, p.key, nowMs, gen.peek());
        if (set.blocks.length > 0) {
          if (gen.count + set.blocks.length > SCOPE_GEN_CAP) throw exhausted(gen.count + set.blocks.length);
          const id = gen.allocate(); // = peek(): the blocks already carry it
          s = { id, set: { key: set.key, flags: set.flags, repushAtMs: set.repushAtMs }, wire: set.blocks, refs: 0 };
          gen.byKey.set(p.key, s);
          gen.byId.set(id, s);
          gen.count += s.wire.length;
          for (const b of s.wire) scopeWire.push(b);
          repush = minDeadline(repush, set.repushAtMs);
        }
      }
      if (!s) {
        out[i] = p.entry;
        continue;
      }
      s.refs++;
      gen.byPrefix.set(prefixKey(e.cidr), s.id);
      out[i] = withScope(p.entry, s.id, s.set.flags);
    }
    return {
      entries: out, scopeWire, scopeRemove: [], repushAtMs: repush, scopeEntries: gen.count,
      commit: () => {
        this.active = gen;
        this.known = true;
      },
      released: () => {},
    };
  }

  /** Entries into the ACTIVE generation (UPSERT). */
  upsert(entries: readonly FilterEntry[], nowMs: number): ScopePlan {
    const gen = this.generation(entries.some((e) => (e.scoped?.length ?? 0) > 0));
    const out: WireEntry[] = new Array<WireEntry>(entries.length);
    const fresh = new Map<string, SetState>();
    const prefixes = new Map<string, number>();
    const delta = new Map<number, number>();
    const bump = (id: number, by: number): void => {
      if (id !== 0) delta.set(id, (delta.get(id) ?? 0) + by);
    };
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      const pk = prefixKey(e.cidr);
      const oldId = prefixes.get(pk) ?? gen.byPrefix.get(pk) ?? 0;
      const p = e.scoped && e.scoped.length > 0 ? prepareEntry(e, nowMs) : null;
      let s = p?.rules ? gen.byKey.get(p.key) ?? fresh.get(p.key) : undefined;
      if (p?.rules && !s) {
        const set = compileScopeSet(p.rules, p.key, nowMs, gen.peek());
        if (set.blocks.length > 0) {
          const id = gen.allocate(); // = peek(); burned even if this plan is dropped
          s = { id, set: { key: set.key, flags: set.flags, repushAtMs: set.repushAtMs }, wire: set.blocks, refs: 0 };
          fresh.set(p.key, s);
        }
      }
      bump(oldId, -1);
      if (s) bump(s.id, +1);
      prefixes.set(pk, s?.id ?? 0);
      out[i] = s ? withScope(p!.entry, s.id, s.set.flags) : (p?.entry ?? e);
    }
    const added = [...fresh.values()].filter((s) => (delta.get(s.id) ?? 0) > 0);
    const removed = [...delta].filter(([id, d]) => d < 0 && gen.byId.has(id) && gen.byId.get(id)!.refs + d <= 0).map(([id]) => gen.byId.get(id)!);
    const addN = added.reduce((n, s) => n + s.wire.length, 0);
    const removeN = removed.reduce((n, s) => n + s.wire.length, 0);
    if (gen.count + addN - removeN > SCOPE_GEN_CAP || gen.count + addN > SCOPE_CAP) throw exhausted(gen.count + addN - removeN);
    let repush: number | null = null;
    for (const s of added) repush = minDeadline(repush, s.set.repushAtMs);
    return {
      entries: out,
      scopeWire: added.flatMap((s) => s.wire),
      scopeRemove: removed.flatMap((s) => s.wire),
      repushAtMs: repush,
      scopeEntries: gen.count + addN - removeN,
      commit: () => {
        for (const s of added) {
          gen.byKey.set(s.set.key, s);
          gen.byId.set(s.id, s);
          gen.count += s.wire.length;
        }
        for (const [id, d] of delta) {
          const s = gen.byId.get(id);
          if (s) s.refs += d;
        }
        for (const [pk, id] of prefixes) {
          if (id === 0) gen.byPrefix.delete(pk);
          else gen.byPrefix.set(pk, id);
        }
        for (const s of removed) {
          gen.byKey.delete(s.set.key); // no new prefix may pick it up; its id waits for released()
          gen.byId.delete(s.id);
          gen.count -= s.wire.length;
        }
      },
      released: () => {
        for (const s of removed) gen.free.push(s.id);
      },
    };
  }

  /** Address entries deleted from the ACTIVE generation: the scope entries that become unused. */
  delete(cidrs: readonly Cidr[]): ScopePlan {
    const entries: FilterEntry[] = cidrs.map((cidr) => ({ cidr, allow: false, deny: false, expiresAtMs: null }));
    const plan = this.upsert(entries, 0);
    return { ...plan, entries: [] };
  }

  private generation(needsKnown: boolean): Generation {
    if (needsKnown && !this.known) {
      throw new NetfenceError("FAILED_PRECONDITION", "the scope ids of this attachment's active policy are not known (adopted from another daemon run): replace the policy before adding scoped entries");
    }
    if (!this.active) this.active = new Generation();
    return this.active;
  }
}

/** The REPLACE entry point named in the lanes' contract: a new generation's entries and scope entries. */
export function compileScopes(entries: readonly FilterEntry[], registry: ScopeRegistry, nowMs: number = Date.now()): ScopePlan {
  return registry.replace(entries, nowMs);
}
