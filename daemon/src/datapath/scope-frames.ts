import { LAYOUT } from "./wire-format.js";
import { writeScopeWireEntry, type ScopeWireEntry } from "./scope-wire.js";

/**
 * Scope-table entries (scope-compile.ts / scope-registry.ts) as the 40-byte nf_wire_entry records the
 * loader frames carry (family NF_WIRE_SCOPE), ahead of the address entries (wire-format.ts
 * encodePolicy / encodeEntries).
 */
export function scopeWireBytes(list: readonly ScopeWireEntry[]): Uint8Array {
  const E = LAYOUT.nf_wire_entry.size;
  const b = new Uint8Array(list.length * E);
  const view = new DataView(b.buffer);
  list.forEach((e, i) => writeScopeWireEntry(view, i * E, e));
  return b;
}
