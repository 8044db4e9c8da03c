/**
 * The gateway's command line: `deno run -A gateway.ts …` and `bun gateway.ts …` hand over
 * to {@linkcode runGateway}. `--help` describes every flag; each has an environment variable
 * (`SWAGGERSOCKET_GATEWAY_…`), and `--config FILE` (JSON, flag names as keys) covers the long
 * lists. A command line it cannot run is one line and the usage, exit code 2; a gateway that
 * cannot start is one line, exit code 1. Log lines go to standard output, one per event.
 *
 * @module
 */

import { RUNTIME } from "../runtime/mod.ts";
import { startGateway } from "../gateway/_start_gateway.ts";
import { credentialLine } from "../gateway/_credentials.ts";
import {
  DEFAULT_AGENT_TIMEOUT,
  DEFAULT_AGENTS_PATH,
  DEFAULT_GATEWAY_HOSTNAME,
  DEFAULT_GATEWAY_PORT,
  STALLED_READER_TIMEOUT,
} from "../gateway/_defaults.ts";
import { startAgent } from "../agent/_start_agent.ts";
import { EventType } from "../types.ts";
import { type FlagTable, helpText, parseFlags, UsageError } from "./_flags.ts";
import {
  createLog,
  type Log,
  LOG_FORMATS,
  LOG_LEVELS,
  type LogFormat,
  type LogLevel,
} from "./_log.ts";
import type { ClusterOptions } from "../gateway/_cluster.ts";
import type { RedisLike } from "../cluster/_registry.ts";

const ENV = (name: string): string =>
  `SWAGGERSOCKET_GATEWAY_${name.toUpperCase().replaceAll("-", "_")}`;

/** Every flag of the gateway, with its default and environment variable. */
export const GATEWAY_FLAGS: FlagTable = withEnv({
  help: { type: "boolean", short: "h", description: "Prints this help and exits" },
  config: { type: "string", kind: "file", description: "Reads flags from a JSON file" },
  hostname: {
    type: "string",
    default: DEFAULT_GATEWAY_HOSTNAME,
    description: "The interface to listen on (0.0.0.0 for every one)",
  },
  port: {
    type: "string",
    kind: "port",
    default: `${DEFAULT_GATEWAY_PORT}`,
    description: "The port (0 picks a free one)",
  },
  path: { type: "string", default: DEFAULT_AGENTS_PATH, description: "Where agents dial in" },
  token: { type: "string", valueName: "SECRET", description: "The shared secret agents present" },
  credentials: {
    type: "string",
    kind: "file",
    description: "Per-agent tokens, one 'NAME sha256:HEX' line each; SIGHUP reloads it",
  },
  "api-token": {
    type: "string",
    valueName: "SECRET",
    description: "The secret HTTP callers present (Authorization: Bearer …)",
  },
  redis: {
    type: "string",
    kind: "url",
    schemes: ["redis", "rediss", "unix"],
    description:
      "Joins a cluster of gateways on this Redis or Valkey (redis://, rediss://, unix:///path)",
  },
  "cluster-secret": {
    type: "string",
    valueName: "SECRET",
    description: "With --redis: the secret the instances present to each other",
  },
  advertise: {
    type: "string",
    kind: "url",
    schemes: ["http", "https"],
    description: "With --redis: where the other instances reach this one (default: its URL)",
  },
  "cluster-ttl": {
    type: "string",
    kind: "ms",
    description:
      "With --redis: how long a record outlives its instance (refreshed every third; default 15000)",
  },
  "cluster-prefix": {
    type: "string",
    valueName: "PREFIX",
    description: "With --redis: the key prefix, to share one Redis between clusters",
  },
  "trusted-proxies": {
    type: "string",
    kind: "list",
    description:
      "Addresses and CIDR blocks whose X-Forwarded-* and Forwarded are kept; an agent dialing through them is its X-Forwarded-For client",
  },
  "preserve-host": { type: "boolean", description: "Sends agents the caller's Host" },
  "no-rewrite": {
    type: "boolean",
    description: "Leaves Location and Set-Cookie paths as the agent sent them",
  },
  timeout: {
    type: "string",
    kind: "ms",
    default: `${DEFAULT_AGENT_TIMEOUT}`,
    description:
      "How long an agent has to answer before the caller gets 504, counted again from each piece of the request body it takes",
  },
  "idle-timeout": {
    type: "string",
    kind: "ms",
    default: "30000",
    description: "How long a caller's connection may wait to send a request head",
  },
  "send-timeout": {
    type: "string",
    kind: "ms",
    default: "60000",
    description: "How long a caller may take nothing of a streaming answer before it is cut",
  },
  "stalled-reader-timeout": {
    type: "string",
    kind: "ms",
    default: `${STALLED_READER_TIMEOUT}`,
    description:
      "The same, sooner, while the answers waiting for their callers fill an agent's connection",
  },
  "drain-timeout": {
    type: "string",
    kind: "ms",
    default: "5000",
    description: "On SIGTERM or SIGINT, how long in-flight requests may finish",
  },
  cert: {
    type: "string",
    kind: "file",
    description: "Serves https and wss with this PEM certificate (chain)",
  },
  key: { type: "string", kind: "file", description: "The PEM key of --cert" },
  ca: {
    type: "string",
    kind: "file",
    description:
      "A CA the gateway trusts when it dials: the other instances' https URLs (with --redis), the demo agent (with --demo and --cert; default the --cert file)",
  },
  "log-format": {
    type: "string",
    default: "pretty",
    choices: LOG_FORMATS,
    description: "How log lines look",
  },
  "log-level": {
    type: "string",
    default: "info",
    choices: LOG_LEVELS,
    description: "The least level logged",
  },
  demo: {
    type: "boolean",
    description: "Starts an agent named demo in the gateway and prints curl lines",
  },
  "exit-after": { type: "string", kind: "ms", description: "Stops after this long (demos, tests)" },
  "hash-token": {
    type: "string",
    valueName: "NAME",
    description: "Prints NAME's credentials line for the token on standard input, and exits",
  },
});

function withEnv(table: FlagTable): FlagTable {
  for (const [name, spec] of Object.entries(table)) {
    // `--hash-token` is a one-off command, not a setting.
    if (name !== "help" && name !== "hash-token") spec.env = ENV(name);
  }
  return table;
}

const USAGE = "gateway.ts [flags]    (deno run -A gateway.ts, or bun gateway.ts)";
const SUMMARY =
  "A gateway for agents behind NAT: agents dial its WebSocket path, HTTP callers reach them\n" +
  "at /agents/{name}/…; /dashboard shows them live, /metrics counts for Prometheus.";

async function main(): Promise<void> {
  const runtime = RUNTIME.script();
  const env = (name: string) => runtime.env(name);
  const first = parseFlags(GATEWAY_FLAGS, runtime.args, { env });
  if (first.values.help) {
    console.log(helpText(USAGE, SUMMARY, GATEWAY_FLAGS));
    return;
  }
  if (first.positionals.length > 0) {
    throw new UsageError(`Unexpected argument: ${first.positionals[0]} (flags start with --)`);
  }
  const configFile = first.values.config as string | undefined;
  const config = configFile === undefined ? undefined : await readConfig(runtime, configFile);
  const flags = configFile === undefined
    ? first.values
    : parseFlags(GATEWAY_FLAGS, runtime.args, { env, config }).values;
  const text = (name: string): string | undefined => flags[name] as string | undefined;
  const number = (name: string): number | undefined =>
    text(name) === undefined ? undefined : Number(text(name));
  const format = text("log-format") as LogFormat;
  const level = text("log-level") as LogLevel;
  const log = createLog({ format, level, write: (line) => console.log(line) });

  const hashName = text("hash-token");
  if (hashName !== undefined) {
    // One trailing newline (from `echo`, or a file) is not part of the token.
    const token = (await runtime.readStdin()).replace(/\r?\n$/, "");
    console.log(await credentialLine(hashName, token));
    return;
  }
  const certFile = text("cert");
  const keyFile = text("key");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError("--cert and --key go together: give both PEM files, or neither");
  }
  const readPem = async (flag: string, file: string): Promise<string> => {
    try {
      return await runtime.readTextFile(file);
    } catch (error) {
      throw new UsageError(`Cannot read --${flag} ${file}: ${(error as Error).message}`);
    }
  };
  const tls = certFile !== undefined && keyFile !== undefined
    ? { cert: await readPem("cert", certFile), key: await readPem("key", keyFile) }
    : undefined;
  const caFile = text("ca");
  const ca = caFile === undefined ? undefined : await readPem("ca", caFile);
  const hostname = text("hostname")!;
  const port = number("port")!;
  const credentialsFile = text("credentials");
  const cluster = await joinCluster(
    text("redis"),
    {
      secret: text("cluster-secret"),
      advertise: text("advertise"),
      ttl: number("cluster-ttl"),
      prefix: text("cluster-prefix"),
    },
    log,
    ca === undefined ? undefined : [ca],
  );
  let gateway;
  try {
    gateway = await startGateway({
      tls,
      hostname,
      port,
      path: text("path"),
      token: text("token"),
      credentialsFile,
      apiToken: text("api-token"),
      timeout: number("timeout"),
      idleTimeout: number("idle-timeout"),
      sendTimeout: number("send-timeout"),
      stalledReaderTimeout: number("stalled-reader-timeout"),
      closeTimeout: number("drain-timeout"),
      trustedProxies: flags["trusted-proxies"] as string[] | undefined,
      preserveHost: flags["preserve-host"] === true,
      rewrite: flags["no-rewrite"] !== true,
      logger: log,
      cluster,
    });
  } catch (error) {
    if ((error as { code?: string }).code === "EADDRINUSE") {
      throw new Error(`Cannot listen on ${hostname}:${port}: the address is in use`);
    }
    throw error;
  }
  if (credentialsFile !== undefined) {
    // Only with a file: otherwise SIGHUP keeps its default (ending the process).
    const reload = (): void => {
      gateway.reloadCredentials().then(
        ({ names, revoked }) => log.info("credentials reloaded", { names, revoked }),
        (error: Error) => log.error("credentials not reloaded, the old ones stay", error),
      );
    };
    try {
      runtime.onSignal("SIGHUP", reload);
    } catch (error) {
      // Windows has no SIGHUP (Deno refuses the listener): embedders call reloadCredentials().
      log.warn("no SIGHUP reload here", error);
    }
  }
  log.info("gateway listening", { url: gateway.url, agents: gateway.agentsUrl });

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info("gateway draining", { signal });
    await gateway.close();
    log.info("gateway stopped");
    runtime.exit(0);
  };
  runtime.onSignal("SIGINT", () => stop("SIGINT"));
  runtime.onSignal("SIGTERM", () => stop("SIGTERM"));
  const exitAfter = number("exit-after");
  if (exitAfter !== undefined) setTimeout(() => stop("exit-after"), exitAfter);

  if (flags.demo === true) {
    // Subscribed first: the agent's end of the handshake completes a moment before the
    // gateway's, and the curl lines must work once printed.
    const events = gateway.server.events();
    // Over TLS the demo agent trusts --ca, else the gateway's own certificate (read above).
    const demoCaFile = tls ? caFile ?? certFile : undefined;
    const agent = startAgent({
      url: gateway.agentsUrl,
      name: "demo",
      token: text("token"),
      ...(tls ? { caCerts: [ca ?? tls.cert] } : {}),
      // A demo agent that cannot connect (a CA that does not fit) says why instead of hanging.
      logger: log,
    });
    const connection = await agent.ready;
    if (!gateway.server.connection(connection.id)) {
      for await (const event of events) {
        if (event.type === EventType.ConnectionReceived && event.connectionId === connection.id) {
          break;
        }
      }
    }
    await events.return?.();
    printDemo(gateway.url, connection.id, demoCaFile, text("api-token") !== undefined);
  }
}

/** The curl lines to try; the API token is a secret, so they name it by its variable. */
function printDemo(base: string, id: string, caFile: string | undefined, withToken: boolean): void {
  const curl = [
    "curl",
    ...(caFile ? [`--cacert ${caFile}`] : []),
    ...(withToken ? ['-H "Authorization: Bearer $SWAGGERSOCKET_GATEWAY_API_TOKEN"'] : []),
  ].join(" ");
  const lines = [
    "",
    "Try:",
    ...(withToken
      ? ["  (with SWAGGERSOCKET_GATEWAY_API_TOKEN set to the API token in your shell)"]
      : []),
    ...[
      `${curl} ${base}/agents`,
      `${curl} ${base}/agents/demo/hello`,
      `${curl} ${base}/agents/demo/time`,
      `${curl} -X POST --data-binary 'hello, agent' ${base}/agents/demo/echo`,
      `${curl} -N ${base}/agents/demo/events`,
      `${curl} -s '${base}/agents/demo/bytes?n=1048576' | wc -c`,
      `${curl} ${base}/agents/${id}/hello`,
    ].map((line) => `  ${line}`),
    `  open ${base}/dashboard in a browser${withToken ? " (the API token is the password)" : ""}`,
    "",
    "Ctrl-C stops.",
  ];
  console.log(lines.join("\n"));
}

/** With `--redis`, the cluster options: a connected client without an offline queue. */
async function joinCluster(
  url: string | undefined,
  options: Omit<ClusterOptions, "redis" | "secret" | "caCerts"> & { secret: string | undefined },
  log: Log,
  caCerts: string[] | undefined,
): Promise<ClusterOptions | undefined> {
  const { secret } = options;
  if (url === undefined) {
    if (Object.values(options).some((value) => value !== undefined)) {
      throw new UsageError(
        "--cluster-secret, --advertise, --cluster-ttl and --cluster-prefix go with --redis",
      );
    }
    return undefined;
  }
  if (secret === undefined) throw new UsageError("--redis needs --cluster-secret");
  // Loaded only for a cluster: a single gateway needs no Redis client.
  const { createClient } = await import("@redis/client");
  const parsed = new URL(url);
  const client = parsed.protocol === "unix:"
    ? createClient({ socket: { path: parsed.pathname, tls: false }, disableOfflineQueue: true })
    : createClient({ url, disableOfflineQueue: true });
  client.on("error", (error: Error) => log.warn("redis", error));
  try {
    await client.connect();
  } catch (error) {
    throw new Error(`Cannot connect to --redis ${url}: ${(error as Error).message}`);
  }
  return { ...options, redis: client as unknown as RedisLike, secret, caCerts };
}

async function readConfig(
  runtime: { readTextFile(path: string): Promise<string> },
  file: string,
): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await runtime.readTextFile(file);
  } catch (error) {
    throw new UsageError(`Cannot read --config ${file}: ${(error as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`Invalid --config ${file}: ${(error as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError(`Invalid --config ${file}: must be a JSON object of flag names`);
  }
  return value as Record<string, unknown>;
}

/**
 * Runs the gateway's command line: a command line it cannot run prints the reason and the
 * usage and exits 2; a failure to start is one line on stderr, and exit 1.
 */
export function runGateway(): void {
  // Not awaited at the top level: a promise that never settles there spins Bun (oven-sh/bun#14951).
  main().catch((error) => {
    const script = RUNTIME.script();
    if (error instanceof UsageError) {
      console.error(`gateway: ${error.message}\nusage: ${USAGE}\nrun with --help for every flag`);
      script.exit(2);
    }
    console.error(`gateway: ${(error as Error).message}`);
    script.exit(1);
  });
}

if (import.meta.main) runGateway();
