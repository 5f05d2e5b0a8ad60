import { Command } from "commander";
import { toJson } from "@bufbuild/protobuf";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ExplainResponseSchema, type AddressExplanation, type DomainExplanation, type RuleOrigin } from "@netfence/proto/daemon";
import { DnsMode, PolicyMode } from "@netfence/proto/types";
import { printJson, usageError, withClient } from "../output.js";
import { parseExplainTarget, type ExplainTarget } from "../explain-target.js";

/**
 * `netfenced explain --id ID ADDRESS[:PORT[/PROTO]]` / `--domain NAME`: the verdict the kernel
 * gives that destination now (read back from the attachment's maps) and why.
 */

const MODE: Record<number, string> = {
  [PolicyMode.DISABLED]: "disabled",
  [PolicyMode.ALLOWLIST]: "allowlist",
  [PolicyMode.DENYLIST]: "denylist",
  [PolicyMode.BLOCK_ALL]: "block-all",
};
const DNS_MODE: Record<number, string> = { [DnsMode.DISABLED]: "disabled", [DnsMode.ALLOWLIST]: "allowlist", [DnsMode.DENYLIST]: "denylist", [DnsMode.PROXY]: "proxy" };
const PROTO_NAMES: Record<number, string> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6" };

const iso = (t: Timestamp | undefined): string => (t === undefined ? "" : new Date(timestampMs(t)).toISOString());

export function durationText(ms: number): string {
  if (ms < 0) return "never expires";
  const s = Math.ceil(ms / 1000);
  if (s < 60) return `${s}s left`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s left`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m left`;
}

export function originText(o: RuleOrigin | undefined): string {
  if (o === undefined || o.source === "") return "origin not recorded (an attachment adopted from its pins: re-registered from the kernel maps)";
  const cmd = o.commandId !== "" ? ` command ${o.commandId}` : "";
  const src = o.source === "control-plane" ? `control plane${cmd}` : o.source === "default-policy" ? "default policy (config)" : o.source === "local-api" ? "local API" : o.source;
  return `${src} (${o.what}) at ${iso(o.at)}`;
}

export function formatAddressExplanation(id: string, a: AddressExplanation): string {
  const dest = a.port !== 0 ? `${a.address.includes(":") ? `[${a.address}]` : a.address}:${a.port}/${PROTO_NAMES[a.protocol] ?? a.protocol}` : a.address;
  const lines = [`${id}: ${dest} is ${a.verdict.toUpperCase()} (${a.reason}, step ${a.step})`];
  lines.push(`  mode:     ${MODE[a.mode] ?? "?"}${a.audit ? " + audit" : ""}${a.keep ? " + keep established" : ""} — ${originText(a.modeOrigin)}`);
  if (a.owner !== "") lines.push(`  owner:    ${a.owner}`);
  for (const s of a.skipped) lines.push(`  skipped:  ${s.cidr} (${s.why === "expired" ? "expired" : "none of its rules matches this packet"})`);
  if (a.protectedCidr !== "") lines.push(`  protected: ${a.protectedCidr} (operator config, host-wide)`);
  const e = a.entry;
  if (e !== undefined) {
    const what = e.deny && e.allow ? "deny+allow" : e.deny ? "deny" : "allow";
    lines.push(`  entry:    ${e.cidr} ${what}, ${durationText(Number(e.ttlLeftMs))} [${e.table}${e.ruleId ? `, rule ${e.ruleId}` : ""}]${e.used ? "" : " (found, but not what decided)"}`);
    for (const r of e.scoped) lines.push(`  scoped:   rule ${r.ruleId} ${r.action} ${r.scope} — ${r.matched ? "matches" : "does not match"}`);
  } else lines.push("  entry:    none (no live kernel entry covers this address)");
  for (const s of a.sources) {
    if (s.kind === "cidr-rule") lines.push(`  because:  ${s.action} ${s.cidr}${s.expiresAt ? ` until ${iso(s.expiresAt)}` : ""} — ${originText(s.origin)}`);
    else {
      const learned = s.learnedAt ? `answer at ${iso(s.learnedAt)}, TTL ${s.answerTtlSeconds}s` : "learned before the daemon restarted";
      lines.push(`  because:  DNS ${s.name} — ${learned}, kept until ${iso(s.expiresAt)}`);
    }
  }
  if (a.names.length > 0) lines.push(`  names:    ${a.names.join(", ")}${a.names.length > 1 ? "  (shared address)" : ""}`);
  for (const n of a.notes) lines.push(`  note:     ${n}`);
  return lines.join("\n") + "\n";
}

export function formatDomainExplanation(id: string, d: DomainExplanation): string {
  const lines = [`${id}: ${d.domain} ${d.resolves ? "RESOLVES" : "is REFUSED"} (DNS mode ${DNS_MODE[d.dnsMode] ?? "?"} — ${originText(d.dnsModeOrigin)})`];
  if (d.ruleAction !== "") {
    lines.push(`  rule:     ${d.ruleAction} ${d.ruleIncludeSubdomains ? "*." : ""}${d.ruleDomain}${d.ruleIncludeSubdomains ? " (and subdomains)" : " (exact)"} — ${originText(d.ruleOrigin)}`);
  } else lines.push("  rule:     none matches");
  if (d.learned.length === 0) lines.push("  learned:  no address currently learned from this name");
  for (const l of d.learned) {
    const shared = l.sharedWith.length > 0 ? `; also from ${l.sharedWith.join(", ")} (shared address)` : "";
    const when = l.learnedAt ? `answer at ${iso(l.learnedAt)}, TTL ${l.answerTtlSeconds}s` : "learned before the daemon restarted";
    lines.push(`  learned:  ${l.address} — ${durationText(Number(l.ttlLeftMs))} (${when})${shared}`);
  }
  for (const n of d.notes) lines.push(`  note:     ${n}`);
  return lines.join("\n") + "\n";
}

export function explainCommand(): Command {
  return new Command("explain")
    .description("why a workload can (or cannot) reach a destination: the kernel's verdict now, the rule behind it and where that came from")
    .argument("[destination]", "ADDRESS[:PORT[/PROTO]] (IPv6 with a port: [ADDRESS]:PORT/PROTO)")
    .requiredOption("--id <id>", "attachment id")
    .option("--domain <name>", "explain a domain name instead: the DNS rule that decides it and the addresses learned from it")
    .option("--user <name>", "the socket owner: a user name or uid (rules for users; cgroup attachments)")
    .option("--uid <uid>", "same as --user with a number")
    .option("--group <name>", "the socket owner's group: a group name or gid")
    .option("--gid <gid>", "same as --group with a number")
    .option("--json", "print JSON")
    .action(async (destination: string | undefined, opts: { id: string; domain?: string; user?: string; uid?: string; group?: string; gid?: string; json?: boolean }, cmd: Command) => {
      if ((opts.user !== undefined && opts.uid !== undefined) || (opts.group !== undefined && opts.gid !== undefined)) {
        usageError("give --user or --uid (and --group or --gid), not both");
        return;
      }
      const owner = { user: opts.user ?? opts.uid ?? "", group: opts.group ?? opts.gid ?? "" };
      if ((destination === undefined) === (opts.domain === undefined)) {
        usageError("give either a destination ADDRESS[:PORT[/PROTO]] or --domain NAME");
        return;
      }
      let target: ExplainTarget = { address: "", port: 0, protocol: "" };
      if (destination !== undefined) {
        try {
          target = parseExplainTarget(destination);
        } catch (err) {
          usageError((err as Error).message);
          return;
        }
      }
      await withClient(cmd, async (client) => {
        const r = await client.explain({ attachmentId: opts.id, domain: opts.domain ?? "", ...target, ...owner });
        if (opts.json) {
          printJson(toJson(ExplainResponseSchema, r));
          return;
        }
        if (r.address !== undefined) process.stdout.write(formatAddressExplanation(r.attachmentId, r.address));
        if (r.domain !== undefined) process.stdout.write(formatDomainExplanation(r.attachmentId, r.domain));
      });
    });
}
