import { pino, type Logger } from "pino";

/** JSON logs to stdout (SPEC §4). Child loggers carry `attachmentId` where one is involved. */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino({ level, base: { name: "netfenced", pid: process.pid } }, destination ?? pino.destination(1));
}

export type { Logger };
