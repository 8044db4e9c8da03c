/**
 * Runs the load agents fixture (`tests/fixtures/load_agents.ts`) as a child process
 * that takes commands on stdin; used by the load and slow-reader tests and by
 * `bench/load/`.
 *
 * @module
 */

import { BUN_BIN, DENO_BIN, type LineProcess, spawnLines } from "./_helpers.ts";

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
