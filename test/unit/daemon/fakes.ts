import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { NetfenceError } from "@netfence/proto/errors";
import type { DnsListen, DnsServerFactory, DnsServerHandle } from "../../../daemon/src/dns/dns-servers.js";
import type { PolicySource } from "../../../daemon/src/attachments/policy-source.js";
import type { AttachmentView } from "../../../daemon/src/attachments/attachment-view.js";
import type { AttachmentPolicy, DnsPolicy } from "../../../daemon/src/policy/policy.js";
import { EMPTY_DNS_POLICY } from "../../../daemon/src/policy/policy.js";
import { formatAddr, parseCidr } from "@netfence/proto/parse";
import type { AttachmentManager } from "../../../daemon/src/attachments/manager.js";


export const silentLogger = pino({ level: "silent" });

/** DNS server factory that tracks which servers run on which ports and what policy they see. */
export class FakeDnsServers implements DnsServerFactory {
  readonly running = new Map<string, { listen: DnsListen; getPolicy: () => DnsPolicy; allowed: bigint; blocked: bigint }>();
  readonly busyPorts = new Set<number>();

  async start(id: string, listen: DnsListen, getPolicy: () => DnsPolicy): Promise<DnsServerHandle> {
    if (this.busyPorts.has(listen.port)) throw new Error(`EADDRINUSE ${listen.host}:${listen.port}`);
    for (const s of this.running.values()) {
      if (s.listen.port === listen.port) throw new Error(`EADDRINUSE ${listen.host}:${listen.port}`);
    }
    const entry = { listen, getPolicy, allowed: 0n, blocked: 0n };
    this.running.set(id, entry);
    return {
      stop: async () => {
        this.running.delete(id);
      },
      stats: () => ({ allowed: entry.allowed, blocked: entry.blocked }),
    };
  }
}

/** PolicySource that answers with a given policy (or fails), recording what it heard. */
export class RecordingPolicySource implements PolicySource {
  readonly subscribed: AttachmentView[] = [];
  readonly unsubscribedCalls: { id: string; reason: string }[] = [];
  fail: NetfenceError | null = null;
  delayMs = 0;
  constructor(public policy: AttachmentPolicy) {}

  async subscribe(view: AttachmentView): Promise<AttachmentPolicy> {
    this.subscribed.push(view);
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.fail !== null) throw this.fail;
    return this.policy;
  }

  unsubscribed(id: string, reason: "removed" | "detached" | "error"): void {
    this.unsubscribedCalls.push({ id, reason });
  }
}

export function policy(partial: Partial<AttachmentPolicy> = {}): AttachmentPolicy {
  return { mode: "allowlist", audit: false, allowCidrs: [], denyCidrs: [], dns: EMPTY_DNS_POLICY, ...partial };
}

/** A directory tree that looks like a cgroup2 mount (dirs with cgroup.procs). */
export function fakeCgroupRoot(...children: string[]): string {
  const root = mkdtempSync(path.join(os.tmpdir(), "nf-cg-"));
  writeFileSync(path.join(root, "cgroup.procs"), "");
  for (const c of children) {
    mkdirSync(path.join(root, c), { recursive: true });
    writeFileSync(path.join(root, c, "cgroup.procs"), "");
  }
  mkdirSync(path.join(root, "not-a-cgroup"), { recursive: true });
  return root;
}

/** A directory that looks like /sys/class/net for link types only: <name>/type per entry. */
export function fakeNetClass(links: Readonly<Record<string, number>>): string {
  const root = mkdtempSync(path.join(os.tmpdir(), "nf-net-"));
  for (const [name, type] of Object.entries(links)) {
    mkdirSync(path.join(root, name));
    writeFileSync(path.join(root, name, "type"), `${type}\n`);
  }
  return root;
}

/**
 * Writes what a DNS answer of `name` produced through the manager's learned-address sink, as a
 * DNS server's LearnedInserter would (addresses as host prefixes, the TTL already floored).
 * The refused addresses come back as text.
 */
export async function learn(
  manager: AttachmentManager, id: string, name: string, addresses: readonly string[], ttlSeconds: number,
): Promise<{ refused: { name: string; address: string; reason: string }[] }> {
  const outcome = await manager.learnedSink.write(id, [{ name, addresses: addresses.map((a) => parseCidr(a)), ttlSeconds }]);
  return { refused: outcome.refused.map((r) => ({ name: r.name, address: formatAddr(r.address.family, r.address.addr), reason: r.reason })) };
}
