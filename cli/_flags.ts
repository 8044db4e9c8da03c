/**
 * The command lines' flags, declared once: each flag's type, default, environment variable and
 * description. From that one table come strict parsing (Node's `util.parseArgs`, which Deno and
 * Bun both have: an unknown flag, a missing value or `--name --port` is an error), the values
 * (a flag wins over its environment variable, which wins over the config file, which wins over
 * the default), checks of URLs, ports and durations naming the flag, and the `--help` text.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { MAX_TIMER_MS } from "../_deadlines.ts";

/** What a flag's value must be, beyond its type. */
export type FlagKind = "text" | "url" | "port" | "ms" | "list" | "file";

/** One flag. */
export interface FlagSpec {
  /** A switch (`--demo`) or a flag with a value (`--port 8080`). */
  type: "boolean" | "string";
  /** One line for `--help`. */
  description: string;
  /** The value's check (string flags). Default `"text"`. */
  kind?: FlagKind;
  /** The default, as `--help` shows it (and used when nothing else gives a value). */
  default?: string;
  /** The environment variable that gives its value when the flag is absent. */
  env?: string;
  /** The value's name in `--help` (e.g. `FILE`). Default from the kind. */
  valueName?: string;
  /** A one-letter alias (`-h`). */
  short?: string;
  /** Schemes a `url` accepts. Default `ws`, `wss`, `http`, `https`. */
  schemes?: string[];
  /** The only values a `text` flag takes (`--help` shows them as its value). */
  choices?: readonly string[];
}

/** A table of flags by their long name (without `--`). */
export type FlagTable = Record<string, FlagSpec>;

/** The parsed values: strings (lists split), `true` for a given switch. */
export type FlagValues = Record<string, string | string[] | boolean | undefined>;

/** A command line that cannot be run as given: print the message and the usage, exit 2. */
export class UsageError extends Error {
  override name = "UsageError";

  /** @param message What is wrong, naming the flag. */
  constructor(message: string) {
    super(message);
  }
}

/** Where values come from besides the arguments. */
export interface FlagSources {
  /** Reads an environment variable. */
  env?: (name: string) => string | undefined;
  /** Values from a config file, by flag name (`"trusted-proxies": ["10.0.0.0/8"]`). */
  config?: Record<string, unknown>;
}

/**
 * Parses `args` against `table`, strictly.
 *
 * @param table The flags.
 * @param args The arguments.
 * @param sources The environment and a config file's values.
 * @returns The values and the positional arguments.
 * @throws {UsageError} For an unknown flag, a missing or ambiguous value, or a bad value.
 */
export function parseFlags(
  table: FlagTable,
  args: string[],
  sources: FlagSources = {},
): { values: FlagValues; positionals: string[] } {
  const options: Record<string, { type: "boolean" | "string"; short?: string }> = {};
  for (const [name, spec] of Object.entries(table)) {
    options[name] = spec.short ? { type: spec.type, short: spec.short } : { type: spec.type };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (error) {
    // `parseArgs`'s own message names the flag and says what is wrong with it.
    throw new UsageError((error as Error).message);
  }
  const config = sources.config ?? {};
  for (const key of Object.keys(config)) {
    if (!Object.hasOwn(table, key)) {
      throw new UsageError(`Unknown setting in the config file: ${key}`);
    }
  }
  const values: FlagValues = {};
  for (const [name, spec] of Object.entries(table)) {
    const given = parsed.values[name] as string | boolean | undefined;
    const fromEnv = spec.env ? sources.env?.(spec.env) : undefined;
    if (spec.type === "boolean") {
      values[name] = given === true || isTrue(fromEnv, spec, name) || config[name] === true;
      continue;
    }
    let raw: unknown = given ?? (fromEnv === "" ? undefined : fromEnv) ?? config[name] ??
      spec.default;
    if (raw === undefined) continue;
    if (spec.kind === "list" && Array.isArray(raw)) raw = raw.join(",");
    if (typeof raw === "number") raw = String(raw);
    if (typeof raw !== "string") {
      throw new UsageError(`Invalid --${name}: the config file gives ${JSON.stringify(raw)}`);
    }
    values[name] = check(name, spec, raw);
  }
  return { values, positionals: parsed.positionals };
}

function isTrue(value: string | undefined, spec: FlagSpec, name: string): boolean {
  if (value === undefined || value === "") return false;
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new UsageError(`Invalid ${spec.env} (for --${name}): ${value} is not true or false`);
}

function check(name: string, spec: FlagSpec, value: string): string | string[] {
  switch (spec.kind ?? "text") {
    case "url": {
      let url: URL;
      try {
        url = new URL(value);
      } catch {
        throw new UsageError(`Invalid --${name}: ${value} is not a URL`);
      }
      const schemes = spec.schemes ?? ["ws", "wss", "http", "https"];
      if (!schemes.includes(url.protocol.slice(0, -1))) {
        throw new UsageError(
          `Invalid --${name}: ${value} must start with ${schemes.map((s) => `${s}://`).join(", ")}`,
        );
      }
      // A unix: URL names a socket file, not a host.
      if (url.hostname === "" && url.protocol !== "unix:") {
        throw new UsageError(`Invalid --${name}: ${value} has no host`);
      }
      return value;
    }
    case "port":
      if (!/^\d{1,5}$/.test(value) || Number(value) > 65_535) {
        throw new UsageError(`Invalid --${name}: ${value} is not a port (0-65535)`);
      }
      return value;
    case "ms":
      // At most what a runtime timer waits (~24.8 days): a longer one fires at once.
      if (!/^\d+$/.test(value) || Number(value) <= 0 || Number(value) > MAX_TIMER_MS) {
        throw new UsageError(
          `Invalid --${name}: ${value} is not a positive number of milliseconds up to ${MAX_TIMER_MS}`,
        );
      }
      return value;
    case "list":
      return value.split(",").map((item) => item.trim()).filter((item) => item !== "");
    default:
      if (value === "") throw new UsageError(`Invalid --${name}: empty`);
      if (spec.choices && !spec.choices.includes(value)) {
        throw new UsageError(`Invalid --${name}: ${value} (one of ${spec.choices.join(", ")})`);
      }
      return value;
  }
}

const VALUE_NAMES: Record<FlagKind, string> = {
  text: "VALUE",
  url: "URL",
  port: "PORT",
  ms: "MS",
  list: "A,B,…",
  file: "FILE",
};

/**
 * The `--help` text: a usage line, then each flag with its value, default and variable.
 *
 * @param usageLine What to type (`gateway.ts [flags]`).
 * @param summary One or two lines on what the command does.
 * @param table The flags.
 * @returns The text, ending with a newline.
 */
export function helpText(usageLine: string, summary: string, table: FlagTable): string {
  const rows = Object.entries(table).map(([name, spec]) => {
    const value = spec.type === "string"
      ? ` ${spec.valueName ?? spec.choices?.join("|") ?? VALUE_NAMES[spec.kind ?? "text"]}`
      : "";
    const flag = `${spec.short ? `-${spec.short}, ` : ""}--${name}${value}`;
    const notes = [
      spec.default !== undefined ? `default ${spec.default}` : "",
      spec.env ? `env ${spec.env}` : "",
    ].filter((note) => note !== "");
    return [flag, spec.description + (notes.length ? ` (${notes.join("; ")})` : "")];
  });
  const width = Math.max(...rows.map(([flag]) => flag.length)) + 2;
  return `usage: ${usageLine}\n\n${summary}\n\n${
    rows.map(([flag, text]) => `  ${flag.padEnd(width)}${text}`).join("\n")
  }\n`;
}
