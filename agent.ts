/**
 * An agent for the gateway (`gateway.ts`): dials out, then serves an API over that socket.
 *
 * The agent dials the gateway's WebSocket path with metadata `{ name, token? }`; the
 * gateway then forwards `/agents/{name}/…` to it. It serves either
 *
 * - the built-in demo API ({@linkcode demoHandler}): `GET /hello`, `GET /time`,
 *   `POST /echo` (streams the body back), `GET /events` (server-sent events),
 *   `GET /bytes?n=` (streams n bytes), `GET /delay?ms=`, `GET /whoami`; or
 * - with `upstream`, everything a local HTTP server serves ({@linkcode tunnelHandler}):
 *   every request is forwarded to it as it came (target, headers and framing untouched),
 *   bodies streaming both ways — a reverse tunnel to a server that is not reachable from
 *   outside.
 *
 * It retries the first connect until the gateway is up, and reconnects with backoff when
 * the connection is lost; a refusal (wrong or missing token, an invalid name) stops it for
 * good, and so does being replaced by a newer agent with the same credentials (4015). A name
 * held by another connection (4014) is retried with backoff.
 *
 * Run it as a script, under Deno or Bun:
 *
 * ```sh
 * deno run -A agent.ts [ws://127.0.0.1:8080/agents/connect] --name printer [--token SECRET]
 *                      [--upstream http://127.0.0.1:3000] [--quiet] [--exit-after MS]
 *                      [--ca ca.pem] [--no-rewrite]
 * bun agent.ts …the same arguments…
 * ```
 *
 * The URL may also be the gateway's `http://` base (the default agents path is added); a
 * gateway that serves TLS (`gateway.ts --cert … --key …`) is dialed at `wss://…` or its
 * `https://` base. `--ca FILE` trusts the PEM CA certificate(s) in that file besides the
 * runtime's default roots, for a gateway whose certificate is self-signed or from a private
 * CA (per socket, on Deno and on Bun alike: no `DENO_CERT` or `NODE_EXTRA_CA_CERTS` needed).
 * Each flag may come from the environment: `SWAGGERSOCKET_AGENT_URL`, `…_NAME`, `…_TOKEN`,
 * `…_UPSTREAM`, `…_CA`. Why a connect failed (say, a certificate it does not trust) goes to
 * stderr while it retries. It prints `connected <id>` on each connect, `disconnected <code>` on each
 * loss, `request <METHOD> <path>` per request (unless `--quiet`), and
 * `refused <message>` before exiting with status 1.
 *
 * @example Usage
 * ```ts ignore
 * import { startAgent } from "@swaggersocket/swaggersocket/agent";
 *
 * const agent = startAgent({
 *   url: "ws://gateway.example:8080/agents/connect",
 *   name: "printer",
 *   upstream: "http://127.0.0.1:3000",
 * });
 * const connection = await agent.ready;
 * console.log("connected as", connection.id);
 * ```
 *
 * @module
 */

import {
  type Connection,
  ConnectionClosedError,
  EventType,
  type Handler,
  HandshakeError,
  type HeartbeatOptions,
  type Logger,
  type ReconnectOptions,
  WebSocketClient,
} from "./mod.ts";
import { DEFAULT_AGENTS_PATH } from "./gateway.ts";
import { tunnelHandler, type TunnelOptions } from "./_tunnel.ts";
import { option } from "./_script.ts";
import { RUNTIME as THIS_RUNTIME } from "./runtime/mod.ts";
import { TERMINAL_CLOSE_CODES } from "./protocol/close_codes.ts";
import { Backoff } from "./_backoff.ts";

export { tunnelHandler, type TunnelOptions };

// Types that appear in this module's signatures, re-exported so that it documents itself.
export type {
  CloseOptions,
  Connection,
  ConnectionCloseInfo,
  ConnectionEvent,
  ConnectionOptions,
  ConnectionType,
  EventType,
  FetchFunction,
  Handler,
  HandlerInfo,
  HeartbeatOptions,
  Limits,
  Logger,
  PingHandler,
  PongHandler,
  ReconnectOptions,
  WebSocketClient,
  WebSocketClientOptions,
} from "./mod.ts";

/** Options for {@linkcode startAgent}. */
export interface AgentOptions {
  /**
   * The gateway's agents URL, e.g. `ws://127.0.0.1:8080/agents/connect`. An `http(s)://`
   * or `ws(s)://` URL without a path gets the default agents path.
   */
  url: string | URL;
  /**
   * The agent's name: callers reach it at `/agents/{name}/…`. 1–128 letters, digits, `.`,
   * `_`, `~` or `-`, starting with a letter or digit, and not shaped like a connection id
   * (the gateway refuses other names with 4004).
   */
  name: string;
  /** The gateway's shared token, if it requires one. */
  token?: string;
  /** More metadata to send (merged under `name` and `token`). */
  metadata?: Record<string, unknown>;
  /** Forward every request to this local HTTP server instead of serving the demo API. */
  upstream?: string | URL;
  /**
   * With `upstream`: make a `Location` or cookie `Path` under the upstream's base URL
   * relative to it (see {@linkcode tunnelHandler}), so its address never leaks. Default `true`.
   */
  rewrite?: boolean;
  /** Serve this handler instead (overrides `upstream` and the demo API). */
  handler?: Handler;
  /**
   * Reconnection backoff; also paces retries of the first connect, with the same defaults
   * (see {@linkcode ReconnectOptions}).
   */
  reconnect?: ReconnectOptions;
  /** Heartbeat timing. */
  heartbeat?: HeartbeatOptions;
  /** Called with each request before it is served (for logging). */
  onRequest?: (request: Request) => void;
  /** Where the client's log lines go. Default: nowhere. */
  logger?: Logger;
  /**
   * CA certificates (PEM text, not file names) to trust for a `wss://` (or `https://`)
   * gateway, besides the runtime's default roots: for a gateway whose certificate is
   * self-signed or comes from a private CA. The CLI's `--ca FILE` reads one file into it.
   * Deno and Bun (see `WebSocketClientOptions.caCerts`). Default: the default roots only.
   *
   * @example Usage
   * ```ts ignore
   * const agent = startAgent({
   *   url: "wss://gateway.internal:8443",
   *   name: "printer",
   *   caCerts: [await Deno.readTextFile("ca.pem")],
   * });
   * ```
   */
  caCerts?: string[];
}

/** A running agent, from {@linkcode startAgent}. */
export interface Agent {
  /** The underlying client (events, the live connection). */
  readonly client: WebSocketClient;
  /** Resolves with the first connection; rejects if refused or closed before connecting. */
  readonly ready: Promise<Connection>;
  /**
   * Resolves when the agent has stopped for good: with `undefined` after `close()`, or with
   * the error when the gateway refused it or reconnecting gave up, or with a
   * `ConnectionClosedError` when the gateway closed it with a terminal code (4003: its
   * credential was revoked; 4015: a newer connection with the same credential took its name).
   */
  readonly stopped: Promise<Error | undefined>;
  /** Stops reconnecting and closes the connection. */
  close(): Promise<void>;
  /** Same as `close()`; for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

const RUNTIME: string = THIS_RUNTIME.name;
const encoder = new TextEncoder();

/** Resolves the URL agents dial: `ws(s)://`, with the default path when there is none. */
function agentsUrl(input: string | URL): URL {
  const url = new URL(input);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  if (url.pathname === "/" || url.pathname === "") url.pathname = DEFAULT_AGENTS_PATH;
  return url;
}

/**
 * The demo API an agent serves by default.
 *
 * | Route | Answer |
 * |---|---|
 * | `GET /` | the list of routes |
 * | `GET /hello` | `hello from {name} ({runtime})` |
 * | `GET /time` | `{ now, runtime }` as JSON |
 * | `POST /echo` | the request body, streamed back, with its content type |
 * | `GET /events?count=5&interval=1000` | server-sent events `tick` 1…count |
 * | `GET /bytes?n=1024` | n bytes streamed in 64 KiB chunks; byte i is `i % 256` |
 * | `GET /delay?ms=1000` | `{ delayed }` after ms milliseconds (cancelled with the request) |
 * | `GET /whoami` | `{ name, runtime, connectionId }` |
 *
 * @example Usage
 * ```ts
 * import { demoHandler } from "./agent.ts";
 *
 * const handler = demoHandler("demo");
 * const response = await handler(new Request("http://agent/hello"), {} as never);
 * console.log(await response.text()); // "hello from demo (deno)\n"
 * ```
 *
 * @param name The agent's name, used in answers.
 * @returns A handler for `connection.serve()`.
 */
export function demoHandler(name: string): Handler {
  return async (request, info) => {
    const url = new URL(request.url);
    const route = `${request.method} ${url.pathname}`;
    switch (route) {
      case "GET /":
        return new Response(
          [
            `${name}: a swaggersocket demo agent (${RUNTIME})`,
            "GET  /hello",
            "GET  /time",
            "POST /echo                 streams the body back",
            "GET  /events?count=5&interval=1000   server-sent events",
            "GET  /bytes?n=1024         streams n bytes (byte i = i % 256)",
            "GET  /delay?ms=1000",
            "GET  /whoami",
            "",
          ].join("\n"),
          { headers: { "content-type": "text/plain; charset=utf-8" } },
        );
      case "GET /hello":
        return new Response(`hello from ${name} (${RUNTIME})\n`, {
          headers: { "content-type": "text/plain; charset=utf-8" },
        });
      case "GET /time":
        return Response.json({ now: new Date().toISOString(), runtime: RUNTIME });
      case "GET /whoami":
        return Response.json({
          name,
          runtime: RUNTIME,
          connectionId: info?.connection?.id ?? null,
        });
      case "POST /echo":
        return new Response(request.body, {
          headers: {
            "content-type": request.headers.get("content-type") ?? "application/octet-stream",
          },
        });
      case "GET /events":
        return eventStream(
          intParam(url, "count", 5, 0, 10_000),
          intParam(url, "interval", 1000, 0, 3_600_000),
          request.signal,
        );
      case "GET /bytes":
        return byteStream(intParam(url, "n", 1024, 0, 2 ** 40));
      case "GET /delay": {
        const ms = intParam(url, "ms", 1000, 0, 3_600_000);
        await delay(ms, request.signal);
        return Response.json({ delayed: ms });
      }
    }
    return Response.json(
      { error: "not_found", message: `No route for ${route}; GET / lists them` },
      { status: 404 },
    );
  };
}

function intParam(url: URL, name: string, fallback: number, min: number, max: number): number {
  const text = url.searchParams.get(name);
  const value = text === null ? fallback : Number(text);
  return Number.isFinite(value) ? Math.min(Math.max(Math.floor(value), min), max) : fallback;
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function eventStream(count: number, interval: number, signal: AbortSignal): Response {
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent >= count) {
        controller.close();
        return;
      }
      if (sent > 0) {
        try {
          await delay(interval, signal);
        } catch {
          controller.close();
          return;
        }
      }
      sent++;
      const data = JSON.stringify({ tick: sent, of: count, at: new Date().toISOString() });
      controller.enqueue(encoder.encode(`id: ${sent}\nevent: tick\ndata: ${data}\n\n`));
    },
  }, { highWaterMark: 0 });
  return new Response(body, {
    headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
  });
}

function byteStream(total: number): Response {
  const CHUNK = 64 * 1024;
  let offset = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= total) {
        controller.close();
        return;
      }
      const chunk = new Uint8Array(Math.min(CHUNK, total - offset));
      for (let i = 0; i < chunk.length; i++) chunk[i] = (offset + i) & 0xff;
      offset += chunk.length;
      controller.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
  return new Response(body, {
    headers: { "content-type": "application/octet-stream", "content-length": String(total) },
  });
}

/**
 * Starts an agent: dials the gateway (retrying until it is up), serves the demo API, a
 * tunnel to `upstream`, or `handler`, and reconnects with backoff when the connection is
 * lost. A refusal by the gateway (a missing or wrong token) stops it: `ready` rejects, or
 * `stopped` resolves with the error.
 *
 * @example Usage
 * ```ts ignore
 * import { startAgent } from "@swaggersocket/swaggersocket/agent";
 *
 * await using agent = startAgent({ url: "ws://127.0.0.1:8080/agents/connect", name: "demo" });
 * await agent.ready; // now http://127.0.0.1:8080/agents/demo/hello answers
 * ```
 *
 * @param options Where to dial, the name and token, and what to serve.
 * @returns The running agent.
 * @throws {TypeError} If the URL or `upstream` is not a valid URL of the right kind.
 */
export function startAgent(options: AgentOptions): Agent {
  const url = agentsUrl(options.url);
  const served = options.handler ??
    (options.upstream !== undefined
      ? tunnelHandler(options.upstream, { rewrite: options.rewrite })
      : demoHandler(options.name));
  const onRequest = options.onRequest;
  const handler: Handler = onRequest
    ? (request, info) => {
      onRequest(request);
      return served(request, info);
    }
    : served;
  const metadata: Record<string, unknown> = {
    ...options.metadata,
    name: options.name,
    ...(options.token !== undefined ? { token: options.token } : {}),
  };
  const client = new WebSocketClient({
    url,
    handler,
    reconnect: options.reconnect,
    heartbeat: options.heartbeat,
    logger: options.logger,
    caCerts: options.caCerts,
  }).withMetadata(metadata);

  let closed = false;
  const backoff = new Backoff(options.reconnect);
  let resolveStopped!: (error: Error | undefined) => void;
  const stopped = new Promise<Error | undefined>((resolve) => resolveStopped = resolve);

  // The client's own reconnection gives up (non-retryably) on a refusal: that is the end.
  // So is a terminal close of an open connection (the gateway revoked the agent's
  // credential, or a newer connection with the same one took its name): the client does
  // not reconnect after it.
  const events = client.events();
  (async () => {
    for await (const event of events) {
      if (event.type !== EventType.ConnectionFailure) continue;
      const error = event.error;
      if (
        error instanceof HandshakeError ||
        (error instanceof ConnectionClosedError && TERMINAL_CLOSE_CODES.has(error.code))
      ) {
        resolveStopped(error);
        return;
      }
    }
  })();

  // The first connect is retried too, with the same backoff, until the gateway is up.
  const ready = (async (): Promise<Connection> => {
    for (let attempt = 1;; attempt++) {
      if (closed) throw new DOMException("The agent was closed", "AbortError");
      try {
        return await client.connect();
      } catch (error) {
        const fatal = !(error instanceof HandshakeError) || !error.retryable ||
          attempt >= backoff.maxAttempts;
        if (fatal || closed) {
          resolveStopped(error as Error);
          throw error;
        }
        options.logger?.warn("agent: cannot connect yet, retrying", (error as Error).message);
        await backoff.wait(attempt);
      }
    }
  })();
  // `ready` is also observed through `stopped`: no unhandled rejection when nobody awaits it.
  ready.catch(() => {});

  const agent: Agent = {
    client,
    ready,
    stopped,
    close: async () => {
      closed = true;
      backoff.cancel();
      await client.close();
      await events.return?.();
      resolveStopped(undefined);
    },
    [Symbol.asyncDispose]: () => agent.close(),
  };
  return agent;
}

// ---- script mode ----------------------------------------------------------

async function main(): Promise<void> {
  const runtime = THIS_RUNTIME.script();
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
  const name = from("name") ?? `${RUNTIME}-agent`;
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
    metadata: { runtime: RUNTIME },
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

if (import.meta.main) {
  // Not awaited at the top level: a promise that never settles there spins Bun (oven-sh/bun#14951).
  main().catch((error) => {
    console.error(`agent: ${(error as Error).message}`);
    THIS_RUNTIME.script().exit(1);
  });
}
