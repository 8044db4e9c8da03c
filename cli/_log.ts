/**
 * The command lines' log: one line per event, with an ISO timestamp, a level and fields, as
 * `pretty` text for a terminal or `json` for a log collector. It is a `Logger` (what the
 * library and the gateway take), so that the library's own warnings come out the same way.
 *
 * A call's arguments are a message, then any values: a plain object among them gives fields
 * (`logger.info("agent connected", { name, id })`), an `Error` gives `error="Name: message"`
 * (its stack only at the debug level: one failure is one line), anything else joins the
 * message.
 *
 * @module
 */

/** How much to log, from the most to the least. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** How a line looks. */
export type LogFormat = "pretty" | "json";

/** The levels, in order. */
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** The formats. */
export const LOG_FORMATS: readonly LogFormat[] = ["pretty", "json"];

/** Options for {@linkcode createLog}. */
export interface LogOptions {
  /** The least level written. Default `"info"`. */
  level?: LogLevel;
  /** Default `"pretty"`. */
  format?: LogFormat;
  /** Where a finished line goes (without its newline). Default: standard error. */
  write?: (line: string) => void;
  /** The time of a line. Default: now. */
  now?: () => Date;
}

/** A logger writing one structured line per call. */
export interface Log {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/**
 * Makes a log.
 *
 * @param options The level, the format and where lines go.
 * @returns The log.
 */
export function createLog(options: LogOptions = {}): Log {
  const least = LOG_LEVELS.indexOf(options.level ?? "info");
  const format = options.format ?? "pretty";
  const write = options.write ?? ((line: string) => console.error(line));
  const now = options.now ?? (() => new Date());
  const at = (level: LogLevel) => (...args: unknown[]): void => {
    if (LOG_LEVELS.indexOf(level) < least) return;
    const { message, fields } = split(args, least === 0);
    const time = now().toISOString();
    write(
      format === "json"
        ? JSON.stringify({ time, level, msg: message, ...fields })
        : `${time} ${level.toUpperCase().padEnd(5)} ${message}${pretty(fields)}`,
    );
  };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

function split(args: unknown[], withStack: boolean): {
  message: string;
  fields: Record<string, unknown>;
} {
  const words: string[] = [];
  const fields: Record<string, unknown> = {};
  for (const arg of args) {
    if (arg instanceof Error) {
      fields.error = `${arg.name}: ${arg.message}`;
      if (withStack && arg.stack) fields.stack = arg.stack;
    } else if (typeof arg === "object" && arg !== null && !Array.isArray(arg)) {
      for (const [key, value] of Object.entries(arg)) {
        if (value !== undefined) {
          fields[key] = value instanceof Error ? `${value.name}: ${value.message}` : value;
        }
      }
    } else {
      words.push(typeof arg === "string" ? arg : JSON.stringify(arg) ?? String(arg));
    }
  }
  return { message: words.join(" "), fields };
}

function pretty(fields: Record<string, unknown>): string {
  let out = "";
  for (const [key, value] of Object.entries(fields)) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    out += ` ${key}=${/^[^\s"=]+$/.test(text) ? text : JSON.stringify(text)}`;
  }
  return out;
}
