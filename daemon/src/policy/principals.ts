import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { invalidArgument } from "@netfence/proto/errors";
import type { Principal } from "@netfence/proto/parse";

/**
 * Users and groups by name or number (issue 15, seed 004 FR-10): names are resolved when a policy is
 * applied — through NSS (`getent`, so LDAP/sssd users resolve as the rest of the host sees them), one
 * call per kind for the whole policy — and the numbers go to the kernel. An unknown name is a clear
 * error and the policy is not applied. The reverse direction (uid → name) names the owner in events.
 * A number is taken as is (it need not exist: a rule may name a uid before its user is created).
 */

const run = promisify(execFile);
const NUMBER = /^\d{1,10}$/;
const NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/;
/** The largest id a rule may name: 2^32-2 (4294967295 is (uid_t)-1, "no owner"). */
export const MAX_PRINCIPAL_ID = 0xfffffffe;

export type PrincipalKind = "user" | "group";

/** getent: "name:x:id:..." lines for the keys it knows; exit 2 when one is unknown (the others still print). */
async function getent(database: "passwd" | "group", keys: readonly string[]): Promise<Map<string, { name: string; id: number; gid: number | null }>> {
  const out = new Map<string, { name: string; id: number; gid: number | null }>();
  if (keys.length === 0) return out;
  let stdout = "";
  try {
    ({ stdout } = await run("getent", [database, ...keys], { timeout: 10_000, maxBuffer: 16 << 20 }));
  } catch (err) {
    const e = err as { code?: unknown; stdout?: unknown };
    if (e.code === 2 && typeof e.stdout === "string") stdout = e.stdout; // some keys unknown
    else if (e.code === "ENOENT") throw invalidArgument("user and group names need getent (libc-bin), which is not installed");
    else throw invalidArgument(`looking up ${database} entries failed: ${String(err)}`);
  }
  for (const line of stdout.split("\n")) {
    const f = line.split(":");
    if (f.length < 3) continue;
    const id = Number(f[2]);
    if (!Number.isInteger(id)) continue;
    const gid = database === "passwd" ? Number(f[3]) : NaN; // passwd: name:x:uid:gid:...
    const rec = { name: f[0] ?? "", id, gid: Number.isInteger(gid) ? gid : null };
    out.set(rec.name, rec);
    out.set(String(id), rec);
  }
  return out;
}

/** Parses names or numbers into principals; throws INVALID_ARGUMENT naming every unknown name. */
export async function resolvePrincipals(kind: PrincipalKind, items: readonly (string | number)[]): Promise<Principal[]> {
  const names: string[] = [];
  for (const item of items) {
    const text = String(item).trim();
    if (NUMBER.test(text)) {
      if (Number(text) > MAX_PRINCIPAL_ID) throw invalidArgument(`${kind} id ${text} is out of range (0..${MAX_PRINCIPAL_ID})`);
      continue;
    }
    if (!NAME.test(text)) throw invalidArgument(`"${text.slice(0, 40)}" is not a ${kind} name or number`);
    names.push(text);
  }
  const known = await getent(kind === "user" ? "passwd" : "group", [...new Set(names)]);
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length > 0) throw invalidArgument(`unknown ${kind}${unknown.length > 1 ? "s" : ""}: ${[...new Set(unknown)].join(", ")}`);
  const seen = new Set<number>();
  const out: Principal[] = [];
  for (const item of items) {
    const text = String(item).trim();
    const p: Principal = NUMBER.test(text) ? { id: Number(text), name: null } : { id: known.get(text)!.id, name: text };
    if (seen.has(p.id)) continue;
    seen.add(p.id);
    out.push(p);
  }
  return out.sort((a, b) => a.id - b.id);
}

/**
 * Names → ids for whatever of `names` NSS knows (one getent call); unknown names are simply absent,
 * for a caller that reports them itself, naming the rule (control-plane/command-principals.ts).
 */
export async function lookupPrincipalNames(kind: PrincipalKind, names: readonly string[]): Promise<Map<string, number>> {
  const valid = [...new Set(names.filter((n) => NAME.test(n) && !NUMBER.test(n)))];
  const known = await getent(kind === "user" ? "passwd" : "group", valid);
  const out = new Map<string, number>();
  for (const n of valid) {
    const rec = known.get(n);
    if (rec !== undefined && rec.name === n) out.set(n, rec.id);
  }
  return out;
}

/** A user's primary gid from NSS (by uid), or null when no user has that uid. */
export async function primaryGroupOf(uid: number): Promise<number | null> {
  return (await getent("passwd", [String(uid)])).get(String(uid))?.gid ?? null;
}

/**
 * uid → user name for events and status, cached (a uid without a user gets no name; negative answers
 * are cached too). Bounded, because the uids come from packets: a workload that is root in its cgroup
 * can send from any number of uids. At most `maxEntries` names are kept (the oldest go first), and at
 * most `lookupsPerSecond` new uids are looked up (one `getent` each, which the event stream waits for);
 * beyond that an event goes out without a name (not cached: a later event of that uid is named).
 */
export class OwnerNames {
  private readonly cache = new Map<number, string | null>();
  private readonly pending = new Map<number, Promise<string | null>>();
  private windowStartMs = 0;
  private windowLookups = 0;

  constructor(
    private readonly maxEntries = 4096,
    private readonly lookupsPerSecond = 50,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** The cached name, or undefined when not looked up yet (then call lookup()). */
  cached(uid: number): string | null | undefined {
    return this.cache.get(uid);
  }

  async lookup(uid: number): Promise<string | null> {
    const hit = this.cache.get(uid);
    if (hit !== undefined) return hit;
    let p = this.pending.get(uid);
    if (!p) {
      const now = this.nowMs();
      if (now - this.windowStartMs >= 1000) {
        this.windowStartMs = now;
        this.windowLookups = 0;
      }
      if (this.windowLookups >= this.lookupsPerSecond) return null;
      this.windowLookups++;
      p = getent("passwd", [String(uid)])
        .then((m) => m.get(String(uid))?.name ?? null)
        .catch(() => null)
        .then((name) => {
          if (this.cache.size >= this.maxEntries) this.cache.delete(this.cache.keys().next().value as number);
          this.cache.set(uid, name);
          this.pending.delete(uid);
          return name;
        });
      this.pending.set(uid, p);
    }
    return p;
  }
}
