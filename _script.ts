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
  /** Calls `listener` on the signal. */
  onSignal(signal: "SIGINT" | "SIGTERM", listener: () => void): void;
  /** Exits the process. */
  exit(code: number): never;
}

interface ScriptGlobals {
  Deno?: {
    args: string[];
    env: { get(name: string): string | undefined };
    addSignalListener(signal: string, listener: () => void): void;
    exit(code: number): never;
  };
  Bun?: { argv: string[]; env: Record<string, string | undefined> };
  process?: { on(signal: string, listener: () => void): void; exit(code: number): never };
}

/** This runtime's script facilities (Bun's, else Deno's). */
export function scriptRuntime(): ScriptRuntime {
  const g = globalThis as ScriptGlobals;
  if (g.Bun && g.process) {
    const process = g.process;
    const env = g.Bun.env;
    return {
      args: g.Bun.argv.slice(2),
      env: (name) => env[name],
      onSignal: (signal, listener) => process.on(signal, listener),
      exit: (code) => process.exit(code),
    };
  }
  const deno = g.Deno;
  if (!deno) throw new TypeError("Cannot run as a script: neither Deno nor Bun");
  return {
    args: deno.args,
    env: (name) => deno.env.get(name),
    onSignal: (signal, listener) => deno.addSignalListener(signal, listener),
    exit: (code) => deno.exit(code),
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
