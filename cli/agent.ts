/**
 * The agent's command line: `deno run -A agent.ts …` and `bun agent.ts …` hand over to
 * {@linkcode runAgent}. `--help` describes every flag; each has an environment variable
 * (`SWAGGERSOCKET_AGENT_…`). A command line it cannot run is one line and the usage, exit code
 * 2. Log lines go to standard output, one per event: connected, disconnected (with the close
 * code), each request (unless `--quiet`), each failed connect with its cause and the next
 * delay; a refusal by the gateway is logged and exits 1.
 *
 * @module
 */

import { EventType, type Handler } from "../types.ts";
import { RUNTIME } from "../runtime/mod.ts";
import { DEFAULT_AGENTS_PATH } from "../gateway/_defaults.ts";
import { startAgent } from "../agent/_start_agent.ts";
import { tunnelHandler } from "../agent/_tunnel.ts";
import { demoHandler } from "../agent/_demo_api.ts";
import { partsOf, withParts } from "../connection/_parts_handler.ts";
import { type FlagTable, helpText, parseFlags, UsageError } from "./_flags.ts";
import { createLog, LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "./_log.ts";

const DEFAULT_URL = `ws://127.0.0.1:8080${DEFAULT_AGENTS_PATH}`;

/** Every flag of the agent, with its default and environment variable. */
export const AGENT_FLAGS: FlagTable = {
  help: { type: "boolean", short: "h", description: "Prints this help and exits" },
  url: {
    type: "string",
    kind: "url",
    default: DEFAULT_URL,
    env: "SWAGGERSOCKET_AGENT_URL",
    description:
      "The gateway's agents URL (ws, wss, or an http(s) base); also the arguments, several for a cluster",
  },
  name: {
    type: "string",
    env: "SWAGGERSOCKET_AGENT_NAME",
    description: "The name callers reach it by (/agents/{name}/…); default RUNTIME-agent",
  },
  token: {
    type: "string",
    valueName: "SECRET",
    env: "SWAGGERSOCKET_AGENT_TOKEN",
    description: "The token the gateway asks of agents",
  },
  upstream: {
    type: "string",
    kind: "url",
    schemes: ["http", "https"],
    env: "SWAGGERSOCKET_AGENT_UPSTREAM",
    description: "Tunnels every request to this local HTTP server (default: the demo API)",
  },
  ca: {
    type: "string",
    kind: "file",
    env: "SWAGGERSOCKET_AGENT_CA",
    description: "Trusts this PEM CA for a wss:// gateway (self-signed or private)",
  },
  "no-rewrite": {
    type: "boolean",
    env: "SWAGGERSOCKET_AGENT_NO_REWRITE",
    description: "Passes the upstream's Location and Set-Cookie paths as they are",
  },
  quiet: {
    type: "boolean",
    env: "SWAGGERSOCKET_AGENT_QUIET",
    description: "Logs no line per request",
  },
  "log-format": {
    type: "string",
    default: "pretty",
    choices: LOG_FORMATS,
    env: "SWAGGERSOCKET_AGENT_LOG_FORMAT",
    description: "How log lines look",
  },
  "log-level": {
    type: "string",
    default: "info",
    choices: LOG_LEVELS,
    env: "SWAGGERSOCKET_AGENT_LOG_LEVEL",
    description: "The least level logged",
  },
  "exit-after": {
    type: "string",
    kind: "ms",
    env: "SWAGGERSOCKET_AGENT_EXIT_AFTER",
    description: "Stops after this long (demos, tests)",
  },
};

const USAGE = "agent.ts [URL] [flags]    (deno run -A agent.ts, or bun agent.ts)";
const SUMMARY =
  "An agent: dials a gateway and serves its API (or tunnels to --upstream) to callers\n" +
  "of the gateway, reconnecting with backoff.";

async function main(): Promise<void> {
  const runtime = RUNTIME.script();
  const { values, positionals } = parseFlags(AGENT_FLAGS, runtime.args, {
    env: (name) => runtime.env(name),
  });
  if (values.help) {
    console.log(helpText(USAGE, SUMMARY, AGENT_FLAGS));
    return;
  }
  const text = (name: string): string | undefined => values[name] as string | undefined;
  // URLs as arguments (several: the gateways of a cluster, dialed in turn) are checked as
  // --url is.
  const urls = positionals.length > 0
    ? positionals.map((arg) =>
      parseFlags({ url: AGENT_FLAGS.url }, ["--url", arg]).values.url as string
    )
    : [text("url")!];
  const url = urls.join(" ");
  const format = text("log-format") as LogFormat;
  const level = text("log-level") as LogLevel;
  const log = createLog({ format, level, write: (line) => console.log(line) });
  const name = text("name") ?? `${RUNTIME.name}-agent`;
  const exitAfter = text("exit-after");
  if (exitAfter !== undefined) {
    // A watchdog for tests and demos.
    setTimeout(() => {
      log.info("exit-after reached");
      runtime.exit(0);
    }, Number(exitAfter));
  }
  const caFile = text("ca");
  let caCerts: string[] | undefined;
  if (caFile !== undefined) {
    try {
      caCerts = [await runtime.readTextFile(caFile)];
    } catch (error) {
      throw new UsageError(`Cannot read --ca ${caFile}: ${(error as Error).message}`);
    }
  }
  const upstream = text("upstream");
  const served = upstream !== undefined
    ? tunnelHandler(upstream, { rewrite: values["no-rewrite"] !== true })
    : demoHandler(name);
  const agent = startAgent({
    url: urls,
    name,
    token: text("token"),
    caCerts,
    logger: log,
    metadata: { runtime: RUNTIME.name },
    handler: values.quiet === true
      ? served
      : logged(served, (method, path) => log.info("request", { method, path })),
  });
  (async () => {
    for await (const event of agent.client.events()) {
      if (event.type === EventType.ConnectionReceived) {
        log.info("connected", { id: event.connectionId, name, gateway: url });
      } else if (event.type === EventType.ConnectionClosed && event.connection) {
        const { code, reason } = await event.connection.closed;
        log.info("disconnected", { id: event.connectionId, code, reason });
      }
    }
  })();
  agent.stopped.then((error) => {
    if (error) {
      log.error("refused by the gateway", error);
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

/**
 * Runs the agent's command line: a command line it cannot run prints the reason and the usage
 * and exits 2; a failure to start is one line on stderr, and exit 1.
 */
export function runAgent(): void {
  // Not awaited at the top level: a promise that never settles there spins Bun (oven-sh/bun#14951).
  main().catch((error) => {
    const script = RUNTIME.script();
    if (error instanceof UsageError) {
      console.error(`agent: ${error.message}\nusage: ${USAGE}\nrun with --help for every flag`);
      script.exit(2);
    }
    console.error(`agent: ${(error as Error).message}`);
    script.exit(1);
  });
}

if (import.meta.main) runAgent();

/**
 * `served`, saying each request's method and target (as the gateway sent it) first; a tunnel
 * keeps its parts form, so that logging costs it no `Request`.
 */
function logged(served: Handler, say: (method: string, path: string) => void): Handler {
  const handler: Handler = (request, info) => {
    say(request.method, info.target);
    return served(request, info);
  };
  const parts = partsOf(served);
  if (!parts) return handler;
  return withParts(handler, (request) => {
    say(request.method, request.target);
    return parts(request);
  });
}
