/**
 * The agent's command line: `deno run -A agent.ts …` and `bun agent.ts …` hand over to
 * {@linkcode runAgent} (see `agent.ts` for the flags).
 *
 * @module
 */

import { EventType } from "../types.ts";
import { RUNTIME } from "../runtime/mod.ts";
import { DEFAULT_AGENTS_PATH } from "../gateway/_defaults.ts";
import { startAgent } from "../agent/_start_agent.ts";
import { option } from "./_args.ts";

async function main(): Promise<void> {
  const runtime = RUNTIME.script();
  const { args } = runtime;
  const from = (name: string): string | undefined =>
    option(args, name, runtime.env(`SWAGGERSOCKET_AGENT_${name.toUpperCase()}`));
  if (args.includes("--help") || args.includes("-h")) {
    console.log(
      "usage: agent.ts [ws://127.0.0.1:8080/agents/connect] --name NAME [--token SECRET]\n" +
        "                [--upstream http://127.0.0.1:3000] [--quiet] [--exit-after MS]\n" +
        "                [--ca ca.pem] [--no-rewrite]\n" +
        "env: SWAGGERSOCKET_AGENT_{URL,NAME,TOKEN,UPSTREAM,CA}\n" +
        "The URL may be wss:// or https://; --ca trusts that PEM CA (for a self-signed or\n" +
        "private gateway certificate). Failed connects are retried and reported on stderr.\n" +
        "--no-rewrite: pass the upstream's Location and Set-Cookie paths as they are",
    );
    return;
  }
  const url = args.find((arg) => /^(wss?|https?):\/\//.test(arg)) ?? from("url") ??
    `ws://127.0.0.1:8080${DEFAULT_AGENTS_PATH}`;
  const name = from("name") ?? `${RUNTIME.name}-agent`;
  const quiet = args.includes("--quiet");
  // A watchdog for tests and demos: exit by itself after this many milliseconds.
  const exitAfter = Number(option(args, "exit-after", undefined) ?? 0);
  if (exitAfter > 0) {
    setTimeout(() => {
      console.log("exit-after reached");
      runtime.exit(0);
    }, exitAfter);
  }
  /** One line on stderr per warning: errors by their message, without a stack. */
  const complain = (...parts: unknown[]): void =>
    console.error(parts.map((part) => part instanceof Error ? part.message : part).join(" "));
  const caFile = from("ca");
  let caCerts: string[] | undefined;
  if (caFile !== undefined) {
    try {
      caCerts = [await runtime.readTextFile(caFile)];
    } catch (error) {
      throw new TypeError(`Cannot read --ca ${caFile}: ${(error as Error).message}`);
    }
  }
  const agent = startAgent({
    url,
    name,
    token: from("token"),
    upstream: from("upstream"),
    rewrite: !args.includes("--no-rewrite"),
    caCerts,
    // Why a connect failed (a certificate not trusted, nothing listening) goes to stderr.
    logger: { debug() {}, info() {}, warn: complain, error: complain },
    metadata: { runtime: RUNTIME.name },
    onRequest: quiet ? undefined : (request) => {
      const target = new URL(request.url);
      console.log(`request ${request.method} ${target.pathname}${target.search}`);
    },
  });
  (async () => {
    for await (const event of agent.client.events()) {
      if (event.type === EventType.ConnectionReceived) {
        console.log(`connected ${event.connectionId}`);
      } else if (event.type === EventType.ConnectionClosed) {
        console.log(`disconnected ${event.connectionId}`);
      }
    }
  })();
  agent.stopped.then((error) => {
    if (error) {
      console.log(`refused ${error.message}`);
      runtime.exit(1);
    }
    runtime.exit(0);
  });
  const stop = (): void => {
    agent.close().finally(() => runtime.exit(0));
  };
  runtime.onSignal("SIGINT", stop);
  runtime.onSignal("SIGTERM", stop);
}

/** Runs the agent's command line; a failure to start is one line on stderr, and exit 1. */
export function runAgent(): void {
  // Not awaited at the top level: a promise that never settles there spins Bun (oven-sh/bun#14951).
  main().catch((error) => {
    console.error(`agent: ${(error as Error).message}`);
    RUNTIME.script().exit(1);
  });
}

if (import.meta.main) runAgent();
