import { Command, InvalidArgumentError } from "commander";
import { toJson } from "@bufbuild/protobuf";
import { AttachmentInfoSchema, type AttachmentInfo } from "@netfence/proto/daemon";
import { AttachmentType, DnsMode, PolicyMode } from "@netfence/proto/types";
import { formatTable, printJson, withClient } from "../output.js";

const MODE: Record<number, string> = {
  [PolicyMode.DISABLED]: "disabled",
  [PolicyMode.ALLOWLIST]: "allowlist",
  [PolicyMode.DENYLIST]: "denylist",
  [PolicyMode.BLOCK_ALL]: "block-all",
};
const DNS_MODE: Record<number, string> = {
  [DnsMode.DISABLED]: "disabled",
  [DnsMode.ALLOWLIST]: "allowlist",
  [DnsMode.DENYLIST]: "denylist",
  [DnsMode.PROXY]: "proxy",
};

function pageSize(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new InvalidArgumentError("must be an integer in 1..1000");
  return n;
}

export function attachmentRows(list: readonly AttachmentInfo[]): string[][] {
  return list.map((a) => [
    a.id,
    a.target,
    a.type === AttachmentType.TC ? "interface" : a.type === AttachmentType.CGROUP ? "cgroup" : "?",
    a.attachMethod || "-",
    `${MODE[a.mode] ?? "?"}${a.audit ? " (audit)" : ""}`,
    DNS_MODE[a.dnsMode] ?? "?",
    a.dnsAddress,
    a.packetsAllowed.toString(),
    a.packetsBlocked.toString(),
    Object.entries(a.metadata)
      .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
      .map(([k, v]) => `${k}=${v}`)
      .join(","),
  ]);
}

export const LIST_HEADER = ["ID", "TARGET", "TYPE", "ATTACHED VIA", "MODE", "DNS MODE", "DNS ADDRESS", "ALLOWED", "BLOCKED", "METADATA"];

export function listCommand(): Command {
  return new Command("list")
    .description("list attachments (one page by default, --all for every page)")
    .option("--page-size <n>", "attachments per page", pageSize, 100)
    .option("--page-token <token>", "continue from a previous page")
    .option("--all", "fetch every page")
    .option("--json", "print JSON")
    .action(async (opts: { pageSize: number; pageToken?: string; all?: boolean; json?: boolean }, cmd: Command) => {
      await withClient(cmd, async (client) => {
        let attachments: AttachmentInfo[];
        let totalCount: number;
        let next = "";
        if (opts.all) {
          // Without an explicit --page-size, --all fetches in the largest pages (fewest round trips).
          const size = cmd.getOptionValueSource("pageSize") === "cli" ? opts.pageSize : 1000;
          ({ attachments, totalCount } = await client.listAll(size));
        } else {
          const page = await client.list(opts.pageSize, opts.pageToken ?? "");
          ({ attachments, totalCount } = page);
          next = page.nextPageToken;
        }
        if (opts.json) {
          printJson({ attachments: attachments.map((a) => toJson(AttachmentInfoSchema, a)), nextPageToken: next, totalCount });
          return;
        }
        if (attachments.length === 0) {
          process.stdout.write("No attachments.\n");
          return;
        }
        process.stdout.write(formatTable(LIST_HEADER, attachmentRows(attachments)));
        if (next !== "") {
          process.stdout.write(`\nShowing ${attachments.length} of ${totalCount}; more with --all or --page-token ${next}\n`);
        }
      });
    });
}
