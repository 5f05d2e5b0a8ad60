/**
 * The logger the SDK writes to: the part of pino's interface it uses, so a control plane passes
 * its own pino (or any compatible) logger, and the SDK itself depends on no logging library.
 */
export interface SdkLogger {
  debug(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
  child(bindings: object): SdkLogger;
}

/** Warnings and errors as one JSON line each on stderr (pino's shape); debug and info dropped. */
export function stderrLogger(bindings: object = {}): SdkLogger {
  const write = (level: number, fields: object, message?: string): void => {
    process.stderr.write(`${JSON.stringify({ level, time: Date.now(), ...bindings, ...fields, msg: message })}\n`);
  };
  return {
    debug: () => undefined,
    info: () => undefined,
    warn: (fields, message) => write(40, fields, message),
    error: (fields, message) => write(50, fields, message),
    child: (more) => stderrLogger({ ...bindings, ...more }),
  };
}
