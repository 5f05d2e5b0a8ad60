import type { FilterEntry } from "../../daemon/src/datapath/filter.js";
import { LAYOUT, WIRE_FAMILY_SCOPE, type WireEntry } from "../../daemon/src/datapath/wire-format.js";
import { parseCidr } from "@netfence/proto/parse";

/**
 * Hand-built scope-table entries for the kernel tests of issue 15 (layout 6), written exactly as the
 * contract in bpf/include/netfence.h says (kind, scope u16 LE, principal u32 LE, proto, port big
 * endian; prefixlen = key bits after the generation byte) — independent of the daemon's scope
 * compiler, so that the kernel side is tested on its own.
 */
export const KIND = { ANY: 0, UID: 1, GID: 2 } as const;
export const SCOPE_FLAG = { ANY: 1 << 2, UID: 1 << 3, GID: 1 << 4 } as const;
export const TCP = 6;
export const UDP = 17;

export interface HandScope {
  readonly scope: number;
  readonly kind: 0 | 1 | 2;
  readonly principal?: number;
  /** null/absent = any protocol (prefix 56). */
  readonly proto?: number | null;
  /** First port of an aligned block and its leading bits (16 = one port; 0 = every port). */
  readonly port?: number;
  readonly portBits?: number;
  readonly allow?: boolean;
  readonly deny?: boolean;
  readonly ruleId?: number;
}

export function scopeWire(list: readonly HandScope[]): Buffer {
  const E = LAYOUT.nf_wire_entry;
  const b = Buffer.alloc(list.length * E.size);
  list.forEach((s, i) => {
    const off = i * E.size;
    const proto = s.proto ?? null;
    const bits = proto === null ? 0 : s.portBits ?? (s.port === undefined ? 0 : 16);
    b.writeUInt8(WIRE_FAMILY_SCOPE, off + E.family);
    b.writeUInt8(proto === null ? 56 : 64 + bits, off + E.prefixlen);
    b.writeUInt8((s.allow ? 1 : 0) | (s.deny ? 2 : 0), off + E.flags);
    b.writeUInt32LE(s.ruleId ?? 0, off + E.rule_id);
    b.writeUInt8(s.kind, off + E.addr);
    b.writeUInt16LE(s.scope, off + E.addr + 1);
    b.writeUInt32LE((s.principal ?? 0) >>> 0, off + E.addr + 3);
    if (proto !== null) {
      b.writeUInt8(proto, off + E.addr + 7);
      if (bits > 0) b.writeUInt16BE((s.port ?? 0) & ((0xffff << (16 - bits)) & 0xffff), off + E.addr + 8);
    }
  });
  return b;
}

/** An address entry pointing at scope set `scope` with the kinds `kinds` (SCOPE_FLAG bits); unscoped flags optional. */
export function scopedEntry(cidr: string, scope: number, kinds: number, unscoped: Partial<Pick<FilterEntry, "allow" | "deny">> = {}): WireEntry {
  return { cidr: parseCidr(cidr), allow: unscoped.allow ?? false, deny: unscoped.deny ?? false, expiresAtMs: null, scopeId: scope, scopeKinds: kinds };
}
