import type { PolicyCommand } from "./policy.js";
import { formatCidr, scopeKey } from "@netfence/proto/parse";

/**
 * Where each rule of one attachment came from (explain): the control-plane command (its id and
 * time), the SubscribedAck, the default policy, the local API. Kept cheap: one shared record per
 * policy-wide change (attach, BulkUpdate, SubscribedAck) and one record per rule changed on its own
 * since — never one per kernel entry. Part of the attachment's PolicyState, so it is persisted with
 * it (StoredAttachment.origins) and survives a restart; an attachment adopted from its pins has none.
 */

export type OriginSource = "control-plane" | "default-policy" | "local-api" | "attach";

export interface RuleOrigin {
  readonly source: OriginSource;
  /** The control-plane command id ("" when there is none: a SubscribedAck, the local API). */
  readonly commandId: string;
  /** What it was: "allow-cidr", "bulk-update", "subscribed-ack", "default-policy", ... */
  readonly what: string;
  readonly atMs: number;
}

/** The persisted form (StoredAttachment.origins). */
export interface StoredOrigins {
  readonly base: RuleOrigin | null;
  readonly rules: readonly (readonly [string, RuleOrigin])[];
}

const SOURCES: readonly string[] = ["control-plane", "default-policy", "local-api", "attach"];

function validOrigin(v: unknown): v is RuleOrigin {
  if (typeof v !== "object" || v === null) return false;
  const o = v as Record<string, unknown>;
  return SOURCES.includes(o.source as string) && typeof o.commandId === "string" && typeof o.what === "string" && typeof o.atMs === "number";
}

export class RuleOrigins {
  /** The last change that replaced the whole policy (attach, bulk update). */
  private base: RuleOrigin | null = null;
  /** Rules changed on their own since base: "cidr:allow:10.0.0.0/8", "domain:deny:x.com", "mode", "dns-mode", "dns-rules". */
  private readonly rules = new Map<string, RuleOrigin>();
  /** The keys of `rules` that name scoped CIDR rules (few), so RemoveCIDR finds them without a scan. */
  private readonly scopedKeys = new Set<string>();

  /** From the stored form; anything malformed (a hand-edited file) is left out, never fatal. */
  static fromStored(s: unknown): RuleOrigins {
    const out = new RuleOrigins();
    if (typeof s !== "object" || s === null) return out;
    const { base, rules } = s as { base?: unknown; rules?: unknown };
    if (validOrigin(base)) out.base = base;
    if (Array.isArray(rules)) for (const r of rules) if (Array.isArray(r) && typeof r[0] === "string" && validOrigin(r[1])) {
      out.rules.set(r[0], r[1]);
      if (r[0].startsWith("cidr:") && r[0].includes(" ")) out.scopedKeys.add(r[0]);
    }
    return out;
  }

  /** The stored form; undefined when nothing is recorded. */
  toStored(): StoredOrigins | undefined {
    if (this.base === null && this.rules.size === 0) return undefined;
    return { base: this.base, rules: [...this.rules] };
  }

  /** The attachment's whole policy was set (attach) by `origin`. */
  noteInitial(origin: RuleOrigin): void {
    this.base = origin;
    this.rules.clear();
    this.scopedKeys.clear();
  }

  /** A command was applied (after its plan committed). */
  noteCommand(command: PolicyCommand, origin: RuleOrigin): void {
    switch (command.kind) {
      case "bulk-update":
        if (command.dns === null) {
          // DNS rules stay as they were: keep their records (and their base), replace the rest.
          const dnsBase = this.rules.get("dns-rules") ?? this.base;
          const kept = [...this.rules].filter(([k]) => k.startsWith("domain:") || k === "dns-mode");
          this.rules.clear();
          this.scopedKeys.clear();
          for (const [k, v] of kept) this.rules.set(k, v);
          if (dnsBase !== null) this.rules.set("dns-rules", dnsBase);
        } else {
          this.rules.clear();
          this.scopedKeys.clear();
        }
        this.base = origin;
        return;
      case "set-mode":
        this.rules.set("mode", origin);
        return;
      case "allow-cidr":
      case "deny-cidr":
      {
        // A scoped rule (issue 15) is its own rule: "cidr:allow:10.0.0.0/8 <scope key>".
        const scope = scopeKey(command.rule.scope);
        const key = `cidr:${command.kind === "allow-cidr" ? "allow" : "deny"}:${formatCidr(command.rule.cidr)}${scope === "" ? "" : ` ${scope}`}`;
        this.rules.set(key, origin);
        if (scope !== "") this.scopedKeys.add(key);
        return;
      }
      case "remove-cidr": {
        // Every rule of the prefix, whatever its scope.
        const key = formatCidr(command.cidr);
        this.rules.delete(`cidr:allow:${key}`);
        this.rules.delete(`cidr:deny:${key}`);
        for (const k of this.scopedKeys) {
          if (k.startsWith(`cidr:allow:${key} `) || k.startsWith(`cidr:deny:${key} `)) {
            this.rules.delete(k);
            this.scopedKeys.delete(k);
          }
        }
        return;
      }
      case "set-dns-mode":
        this.rules.set("dns-mode", origin);
        return;
      case "allow-domain":
      case "deny-domain":
        this.rules.set(`domain:${command.kind === "allow-domain" ? "allow" : "deny"}:${command.rule.domain}`, origin);
        return;
      case "remove-domain":
        this.rules.delete(`domain:allow:${command.domain}`);
        this.rules.delete(`domain:deny:${command.domain}`);
        return;
    }
  }

  /** The origin of a CIDR rule (canonical prefix, with " <scope key>" for a scoped rule), or null: not recorded (an adopted attachment). */
  cidr(action: "allow" | "deny", key: string): RuleOrigin | null {
    return this.rules.get(`cidr:${action}:${key}`) ?? this.base;
  }

  domain(action: "allow" | "deny", domain: string): RuleOrigin | null {
    return this.rules.get(`domain:${action}:${domain}`) ?? this.rules.get("dns-rules") ?? this.base;
  }

  mode(): RuleOrigin | null {
    return this.rules.get("mode") ?? this.base;
  }

  dnsMode(): RuleOrigin | null {
    return this.rules.get("dns-mode") ?? this.rules.get("dns-rules") ?? this.base;
  }
}
