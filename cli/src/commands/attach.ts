import { Command, Option } from "commander";
import { printJson, usageError, withClient } from "../output.js";

const DIRECTION_KEY = "netfence.direction";

/** Parses "k=v,k2=v2" (repeatable) into a map; throws on an entry without "=". */
export function parseMetadata(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    for (const part of value.split(",").map((p) => p.trim()).filter((p) => p !== "")) {
      const eq = part.indexOf("=");
      if (eq <= 0) throw new Error(`--metadata entry "${part}" is not key=value`);
      out[part.slice(0, eq)] = part.slice(eq + 1);
    }
  }
  return out;
}

export function attachCommand(): Command {
  return new Command("attach")
    .description("attach a filter to an interface or a cgroup; prints its id and DNS address")
    .option("-i, --interface <name>", "network interface (host side of a veth/tap)")
    .option("-g, --cgroup <path>", "cgroup v2 path (absolute, or relative to the cgroup2 mount)")
    .option("--metadata <k=v,...>", "attachment metadata (repeatable)", (v: string, prev: string[]) => [...prev, v], [] as string[])
    .addOption(new Option("--direction <dir>", "TC hook for interfaces: ingress = packets sent by the workload (default)").choices(["ingress", "egress"]))
    .option("--json", "print the result as JSON")
    .action(async (opts: { interface?: string; cgroup?: string; metadata: string[]; direction?: string; json?: boolean }, cmd: Command) => {
      if ((opts.interface === undefined) === (opts.cgroup === undefined)) {
        usageError("attach needs exactly one of --interface/-i NAME or --cgroup/-g PATH");
        return;
      }
      let metadata: Record<string, string>;
      try {
        metadata = parseMetadata(opts.metadata);
      } catch (err) {
        usageError((err as Error).message);
        return;
      }
      if (opts.direction !== undefined) {
        if (opts.cgroup !== undefined) {
          usageError("--direction applies to --interface only");
          return;
        }
        metadata[DIRECTION_KEY] = opts.direction;
      }
      await withClient(cmd, async (client) => {
        const res = await client.attach({
          target: opts.interface !== undefined ? { case: "interfaceName", value: opts.interface } : { case: "cgroupPath", value: opts.cgroup! },
          metadata,
        });
        if (opts.json) printJson({ id: res.id, dnsAddress: res.dnsAddress });
        else process.stdout.write(`ID: ${res.id}\nDNS Address: ${res.dnsAddress}\n`);
      });
    });
}
