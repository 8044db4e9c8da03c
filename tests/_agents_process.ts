/**
 * Runs the load agents fixture (`tests/fixtures/load_agents.ts`) as a child process
 * that takes commands on stdin; used by the load and slow-reader tests and by
 * `bench/load/`. (`spawnFixture` in `_helpers.ts` gives its children no stdin.)
 *
 * @module
 */

import { spawn } from "node:child_process";
import process from "node:process";
import { BUN_BIN, DENO_BIN, ROOT_DIR, withTimeout } from "./_helpers.ts";

/** A child process that takes line commands on stdin and prints lines on stdout. */
export interface LineProcess {
  /** Lines printed on stdout so far. */
  lines: string[];
  /** Resolves with the first stdout line (past or future) matching `pattern`. */
  waitFor(pattern: RegExp, ms?: number): Promise<RegExpMatchArray>;
  /** Writes one command line to its stdin. */
  send(line: string): void;
  /** Closes its stdin. */
  end(): void;
  /** Resolves with the exit code when the process has ended. */
  exited: Promise<number | null>;
  /** Kills the process (SIGKILL) if it still runs, and waits for it to end. */
  kill(): Promise<void>;
}

/** The agents process: closing its stdin makes it close its clients and exit 0. */
export type AgentsProcess = LineProcess;

/** Options for {@linkcode spawnAgents}. */
export interface SpawnAgentsOptions {
  /** How many agents. */
  agents: number;
  /** The fixture's own watchdog, milliseconds. Default 60 000. */
  watchdog?: number;
  /** Handshakes at once while dialing. Default 50. */
  dialConcurrency?: number;
  /** The agents' `limits.initialWindow`. Default: the library's. */
  window?: number;
}

/**
 * Starts `tests/fixtures/load_agents.ts` under `runtime`, dialing `url`.
 *
 * @param runtime Which runtime runs the agents.
 * @param url The server's `ws://` URL.
 * @param options How many agents, and the watchdog.
 * @returns The running process; wait for `/^ready (\d+)/` before sending commands.
 */
export function spawnAgents(
  runtime: "deno" | "bun",
  url: string,
  options: SpawnAgentsOptions,
): AgentsProcess {
  const script = new URL("fixtures/load_agents.ts", import.meta.url).pathname;
  const args = [
    url,
    "--agents",
    String(options.agents),
    "--watchdog",
    String(options.watchdog ?? 60_000),
    "--dial-concurrency",
    String(options.dialConcurrency ?? 50),
    ...(options.window ? ["--window", String(options.window)] : []),
  ];
  const argv = runtime === "deno"
    ? ["run", "-A", "--quiet", script, ...args]
    : ["run", script, ...args];
  return spawnLines(runtime === "deno" ? DENO_BIN : BUN_BIN, argv, "load agents");
}

/**
 * Starts `command` with `argv`; stdin is a pipe for line commands, stderr is inherited.
 *
 * @param command The executable.
 * @param argv Its arguments.
 * @param name What error messages call it.
 * @returns The running process.
 */
export function spawnLines(command: string, argv: string[], name: string): LineProcess {
  const child = spawn(command, argv, {
    cwd: ROOT_DIR,
    env: { ...process.env, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (match: RegExpMatchArray) => void }[] = [];
  let buffered = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => {
    buffered += chunk;
    let newline: number;
    while ((newline = buffered.indexOf("\n")) !== -1) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      lines.push(line);
      for (const waiter of [...waiters]) {
        const match = line.match(waiter.pattern);
        if (match) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(match);
        }
      }
    }
  });
  // A write to a child that has gone must not crash the test process.
  child.stdin!.on("error", () => {});
  const exited = new Promise<number | null>((resolve) =>
    child.on("close", (code) => resolve(code))
  );
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    lines,
    waitFor(pattern, ms = 30_000) {
      for (const line of lines) {
        const match = line.match(pattern);
        if (match) return Promise.resolve(match);
      }
      return withTimeout(
        Promise.race([
          new Promise<RegExpMatchArray>((resolve) => waiters.push({ pattern, resolve })),
          exited.then((code) => {
            throw new Error(`${name} exited with ${code} before printing ${pattern}`);
          }),
        ]),
        ms,
        `${name} to print ${pattern}`,
      );
    },
    send(line) {
      if (running()) child.stdin!.write(`${line}\n`);
    },
    end() {
      if (running()) child.stdin!.end();
    },
    exited,
    async kill() {
      if (running()) child.kill("SIGKILL");
      await exited;
    },
  };
}
