/**
 * The enforcement engines bench/segmentation compares, each able to (re)apply the N-rule policy
 * and to clear itself. The baselines run as the operator would run them (a process per apply,
 * timed from spawn to exit), inside the bench's own network namespace only: the iptables filter
 * table and the nft table `nfseg` of that namespace, never the root namespace's firewall.
 */
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { run } from "../lib/run-command.js";
import {
  IPTABLES_OPEN, NFT_DELETE, iptablesAppendCommands, iptablesRestoreText, nftRulesText, nftSetText, segRules, type Variant,
} from "./rulesets.js";

export interface Engine {
  /** Short name in the results (no-filter, iptables-restore, …). */
  readonly name: string;
  /** Applies the N-rule policy (variant a or b); resolves with the wall time of the apply in ms. */
  apply(n: number, variant: Variant): Promise<number>;
  /** Removes what this engine enforces (the namespace back to no filtering for the bench's flows). */
  clear(): Promise<void>;
}

export interface EngineContext {
  readonly workdir: string;
  readonly benchUid: number;
  readonly benchPort: number;
  /** Bound of one rule-by-rule `iptables -A` apply (10,000 processes take minutes). */
  readonly appendLimitMs: number;
}

/** Runs `cmd args` with `stdin` as its input, bounded at `limitMs`; resolves with its wall time in ms. */
export async function timedRun(cmd: string, args: readonly string[], stdin: string | null, limitMs = 60_000): Promise<number> {
  const t0 = performance.now();
  const child = spawn(cmd, [...args], { stdio: [stdin === null ? "ignore" : "pipe", "ignore", "pipe"] });
  let err = "";
  child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  if (stdin !== null) child.stdin!.end(stdin);
  const timer = setTimeout(() => child.kill("SIGKILL"), limitMs);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  clearTimeout(timer);
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`${cmd} ${args.slice(0, 6).join(" ")} failed (${code}): ${err.trim().slice(0, 500)}`);
  return ms;
}

/** The namespace's iptables filter table and our nft table back to nothing. */
export async function clearBaselines(): Promise<void> {
  await timedRun("iptables-restore", [], IPTABLES_OPEN);
  await timedRun("nft", ["-f", "-"], NFT_DELETE);
}

/** The policy's text per (n, variant), built once: generating 10,000 rules is not what is timed. */
function cached<T>(make: (n: number, v: Variant) => T): (n: number, v: Variant) => T {
  const m = new Map<string, T>();
  return (n, v) => {
    const k = `${n}/${v}`;
    if (!m.has(k)) m.set(k, make(n, v));
    return m.get(k)!;
  };
}

export function baselineEngines(ctx: EngineContext): Engine[] {
  const rules = (n: number, v: Variant) => segRules(n, ctx.benchUid, ctx.benchPort, v);
  const restoreText = cached((n, v) => iptablesRestoreText(rules(n, v)));
  const appendCmds = cached((n, v) => iptablesAppendCommands(rules(n, v)));
  const nftFiles = new Map<string, string>();
  const nftFile = async (kind: "rules" | "set", n: number, v: Variant): Promise<string> => {
    const k = `${kind}-${n}-${v}`;
    let f = nftFiles.get(k);
    if (f === undefined) {
      f = path.join(ctx.workdir, `${k}.nft`);
      await writeFile(f, kind === "rules" ? nftRulesText(rules(n, v)) : nftSetText(rules(n, v)));
      nftFiles.set(k, f);
    }
    return f;
  };
  const clearIptables = async () => void (await timedRun("iptables-restore", [], IPTABLES_OPEN));
  const clearNft = async () => void (await timedRun("nft", ["-f", "-"], NFT_DELETE));
  return [
    { name: "no-filter", apply: async () => 0, clear: async () => undefined },
    { name: "iptables-restore", apply: (n, v) => timedRun("iptables-restore", [], restoreText(n, v)), clear: clearIptables },
    {
      name: "iptables-append",
      // The seed's apply.sh: one `iptables` process per rule, after a flush (not atomic).
      apply: async (n, v) => {
        const t0 = performance.now();
        const cmds = appendCmds(n, v);
        for (let i = 0; i < cmds.length; i++) {
          const ms = performance.now() - t0;
          if (ms > ctx.appendLimitMs) throw new Error(`iptables -A did not finish: ${i} of ${cmds.length} commands in ${Math.round(ms)} ms (bound ${ctx.appendLimitMs} ms)`);
          await timedRun("iptables", ["-w", ...cmds[i]!], null);
        }
        return performance.now() - t0;
      },
      clear: clearIptables,
    },
    { name: "nft-rules", apply: async (n, v) => timedRun("nft", ["-f", await nftFile("rules", n, v)], null), clear: clearNft },
    { name: "nft-set", apply: async (n, v) => timedRun("nft", ["-f", await nftFile("set", n, v)], null), clear: clearNft },
  ];
}

/** Tool versions for the results' machine block. */
export async function baselineVersions(): Promise<Record<string, string>> {
  const first = async (cmd: string) => (await run(cmd, ["--version"], true)).split("\n")[0]?.trim() ?? "";
  return { iptables: await first("iptables"), nft: await first("nft") };
}
