/**
 * What `gateway.ts` and `agent.ts` need when they run as scripts, under Deno or Bun:
 * arguments, environment, signals and exit, described structurally (no runtime types).
 *
 * @module
 */

/** The runtime's script facilities. */
export interface ScriptRuntime {
  /** The script's arguments (without the runtime and the script path). */
  args: string[];
  /** Reads an environment variable. */
  env(name: string): string | undefined;
  /** Calls `listener` on the signal (SIGHUP: Unix only). */
  onSignal(signal: "SIGINT" | "SIGTERM" | "SIGHUP", listener: () => void): void;
  /** Reads standard input to its end, as UTF-8 text. */
  readStdin(): Promise<string>;
  /** Exits the process. */
  exit(code: number): never;
  /** Reads a UTF-8 text file (a certificate, a key). */
  readTextFile(path: string): Promise<string>;
}

interface ScriptGlobals {
  Deno?: {
    args: string[];
    env: { get(name: string): string | undefined };
    addSignalListener(signal: string, listener: () => void): void;
    exit(code: number): never;
    readTextFile(path: string): Promise<string>;
    stdin: { readable: ReadableStream<Uint8Array> };
  };
  Bun?: {
    argv: string[];
    env: Record<string, string | undefined>;
    file(path: string): { text(): Promise<string> };
    stdin: { text(): Promise<string> };
  };
  process?: { on(signal: string, listener: () => void): void; exit(code: number): never };
}

/** This runtime's script facilities (Bun's, else Deno's). */
export function scriptRuntime(): ScriptRuntime {
  const g = globalThis as ScriptGlobals;
  if (g.Bun && g.process) {
    const process = g.process;
    const bun = g.Bun;
    const env = bun.env;
    return {
      args: bun.argv.slice(2),
      env: (name) => env[name],
      onSignal: (signal, listener) => process.on(signal, listener),
      readStdin: () => bun.stdin.text(),
      exit: (code) => process.exit(code),
      readTextFile: (path) => bun.file(path).text(),
    };
  }
  const deno = g.Deno;
  if (!deno) throw new TypeError("Cannot run as a script: neither Deno nor Bun");
  return {
    args: deno.args,
    env: (name) => deno.env.get(name),
    onSignal: (signal, listener) => deno.addSignalListener(signal, listener),
    readStdin: () => new Response(deno.stdin.readable).text(),
    exit: (code) => deno.exit(code),
    readTextFile: (path) => deno.readTextFile(path),
  };
}

/** Reads `--name value` (or `--name=value`) from `args`, else `fallback` (an env value). */
export function option(
  args: string[],
  name: string,
  fallback: string | undefined,
): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === `--${name}` && i + 1 < args.length) return args[i + 1];
    if (args[i].startsWith(`--${name}=`)) return args[i].slice(name.length + 3);
  }
  return fallback === "" ? undefined : fallback;
}
