/**
 * The gateway: agents dial in over WebSocket, everyone else calls them over plain HTTP.
 *
 * An agent (see `agent.ts`) behind NAT or a firewall dials the gateway's WebSocket
 * path; the gateway then exposes every connected agent's API on its own HTTP port:
 *
 * | Route | What it does |
 * |---|---|
 * | `GET /healthz` | `ok` (no token needed) |
 * | `GET /agents` | JSON list of agents: `id`, `name`, `metadata` (without `token`), `remoteAddr`, `connectedAt`, `rtt`, `inFlight` |
 * | `ANY /agents/{id-or-name}/{rest...}` | forwards the request to that agent as `/{rest...}?{query}`, streaming both ways |
 * | `GET /agents/connect` (WebSocket upgrade) | where agents dial in (option `path`) |
 *
 * An agent is found by its connection id, or else by the `name` in its metadata (the most
 * recently connected one wins when several share a name). A plain HTTP request to the
 * agents' path (no `Upgrade: websocket`) is routed like any other, so an agent may even be
 * named `connect`.
 *
 * Forwarding keeps the method, status, headers and query string, streams the request body
 * (`duplex: "half"`) and the response body (server-sent events arrive as they are sent),
 * drops hop-by-hop headers (`connection`, `keep-alive`, `proxy-*`, `te`, `trailer`,
 * `transfer-encoding`, `upgrade` and any listed in `Connection`) and adds
 * `x-forwarded-for`, `x-forwarded-host`, `x-forwarded-proto` and `x-forwarded-prefix`
 * (`/agents/{id-or-name}`). Errors come back as JSON `{ error, message }`:
 *
 * | Status | `error` | When |
 * |---|---|---|
 * | 401 | `unauthorized` | with `apiToken`, a request without `Authorization` (or `Proxy-Authorization`) `Bearer <apiToken>` |
 * | 404 | `not_found` / `agent_not_found` | no such route / no agent with that id or name |
 * | 501 | `method_not_supported` | `CONNECT`, `TRACE` or `TRACK`, which web `Request`s cannot carry |
 * | 502 | `agent_unavailable` | the agent went away (or reset the exchange) before answering |
 * | 504 | `agent_timeout` | no response head within `timeout` (default 30 s); bodies may stream for longer |
 *
 * With `token` set, an agent must present it in its metadata (`{ name, token }`); others
 * are refused during the handshake (close code 4003: the agent gets a `HandshakeError`
 * that is not retryable, so it does not hammer the gateway). The token is never listed.
 * With `apiToken` set, every HTTP caller must present that one (`GET /healthz` aside, which
 * answers `ok` to anyone), as a bearer token in `Authorization` or `Proxy-Authorization`;
 * the gateway removes it before forwarding.
 *
 * Run it as a script, under Deno or Bun:
 *
 * ```sh
 * deno run -A gateway.ts [--hostname 127.0.0.1] [--port 8080] [--path /agents/connect]
 *                        [--token SECRET] [--timeout 30000] [--demo] [--exit-after MS]
 * bun gateway.ts …the same flags…
 * ```
 *
 * On Deno, add `--unstable-no-legacy-abort` (as `npm start` does): the gateway watches
 * `request.signal` to cancel an agent's exchange when the caller hangs up, and without the
 * flag Deno prints a one-time warning about that signal's legacy behaviour.
 *
 * Each flag may also come from the environment: `SWAGGERSOCKET_GATEWAY_HOSTNAME`, `…_PORT`,
 * `…_PATH`, `…_TOKEN`, `…_TIMEOUT` (flags win). `--demo` also starts an agent named `demo`
 * inside the gateway process (the demo API of `agent.ts`) and prints `curl` lines to try.
 *
 * @example Usage
 * ```ts ignore
 * import { startGateway } from "@swaggersocket/swaggersocket/gateway";
 *
 * const gateway = startGateway({ port: 8080, token: "s3cret" });
 * console.log(`agents dial ${gateway.agentsUrl}; callers use ${gateway.url}/agents`);
 * // later
 * await gateway.close();
 * ```
 *
 * @module
 */

import {
  type BunServerLike,
  type BunWebSocketHandlers,
  type Connection,
  type DenoServeHandlerInfo,
  EventType,
  type HeartbeatOptions,
  type Logger,
  WebSocketServer,
} from "./mod.ts";
import { option, scriptRuntime } from "./_script.ts";

// Types that appear in this module's signatures, re-exported so that it documents itself.
export type {
  AuthorizeContext,
  BunServerLike,
  BunServerWebSocket,
  BunWebSocketHandlers,
  CloseOptions,
  Connection,
  ConnectionCloseInfo,
  ConnectionEvent,
  ConnectionType,
  DenoServeHandlerInfo,
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
  ServerAddr,
  WebSocketClient,
  WebSocketClientOptions,
  WebSocketServer,
  WebSocketServerOptions,
} from "./mod.ts";

/** Default interface the gateway listens on: loopback only. */
export const DEFAULT_GATEWAY_HOSTNAME = "127.0.0.1";
/** Default gateway port. */
export const DEFAULT_GATEWAY_PORT = 8080;
/** Default path where agents dial in. */
export const DEFAULT_AGENTS_PATH = "/agents/connect";
/** Default milliseconds an agent has to send a response head. */
export const DEFAULT_AGENT_TIMEOUT = 30_000;

/** Options for {@linkcode startGateway}. */
export interface GatewayOptions {
  /** Interface to listen on. Default `"127.0.0.1"`. */
  hostname?: string;
  /** Port to listen on; 0 picks a free one (see `gateway.addr`). Default 8080. */
  port?: number;
  /** Path where agents dial in with a WebSocket. Default `"/agents/connect"`. */
  path?: string;
  /** Shared secret agents must send as `token` in their metadata. Default: none required. */
  token?: string;
  /**
   * Secret every HTTP caller must present, as `Authorization: Bearer <apiToken>` or, so that
   * callers keep `Authorization` for the agent's API, `Proxy-Authorization: Bearer
   * <apiToken>`; else 401. `GET /healthz` needs none. The gateway consumes it: it is not
   * forwarded to agents. Default: none required.
   */
  apiToken?: string;
  /** Milliseconds an agent has to send a response head before the caller gets 504. Default 30 000. */
  timeout?: number;
  /** Heartbeat timing on agents' connections. */
  heartbeat?: HeartbeatOptions;
  /** Milliseconds `close()` lets in-flight exchanges finish. Default 5 000. */
  closeTimeout?: number;
  /** Where log lines go (agents connecting and leaving, failures). Default: nowhere. */
  logger?: Logger;
}

/** One connected agent, as `GET /agents` lists it. */
export interface AgentInfo {
  /** The connection id (a ULID). */
  id: string;
  /** The `name` from its metadata, if it sent one. */
  name: string | null;
  /** The metadata it sent, with any `token` removed. */
  metadata: unknown;
  /** Its address as `"host:port"`. */
  remoteAddr: string;
  /** When it connected, ISO 8601. */
  connectedAt: string | null;
  /** The last heartbeat round trip in milliseconds, if measured yet. */
  rtt: number | null;
  /** Exchanges running over its connection now, both directions. */
  inFlight: number;
}

/** A running gateway, from {@linkcode startGateway}. */
export interface Gateway {
  /** Where it listens (the real port when `port` was 0). */
  readonly addr: { hostname: string; port: number };
  /** Its HTTP base URL, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  /** The WebSocket URL agents dial, e.g. `ws://127.0.0.1:8080/agents/connect`. */
  readonly agentsUrl: string;
  /** The swaggersocket server holding the agents' connections (events, lookups). */
  readonly server: WebSocketServer;
  /** The connected agents, as `GET /agents` lists them. */
  agents(): AgentInfo[];
  /** Stops accepting, lets in-flight exchanges finish (bounded), closes agents and the listener. */
  close(): Promise<void>;
  /** Same as `close()`; for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Methods that web `Request`s refuse (the Fetch standard's forbidden methods). */
const UNCARRIED_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);

/** Request headers that only concern one hop (RFC 9110 §7.6.1), never forwarded. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * A copy of `headers` without hop-by-hop headers: the fixed set (`connection`,
 * `keep-alive`, `proxy-*`, `te`, `trailer`, `transfer-encoding`, `upgrade`) and any
 * header named in `Connection`.
 *
 * @example Usage
 * ```ts
 * import { withoutHopByHop } from "./gateway.ts";
 *
 * const headers = withoutHopByHop(new Headers({ connection: "x-trace", "x-trace": "1", accept: "*\/*" }));
 * console.log([...headers.keys()]); // ["accept"]
 * ```
 *
 * @param headers The headers of a request or response.
 * @returns A new `Headers` without them.
 */
export function withoutHopByHop(headers: Headers): Headers {
  const out = new Headers(headers);
  const listed = headers.get("connection");
  if (listed) {
    for (const name of listed.split(",")) {
      const trimmed = name.trim().toLowerCase();
      if (trimmed) out.delete(trimmed);
    }
  }
  for (const name of [...out.keys()]) {
    if (HOP_BY_HOP.has(name) || name.startsWith("proxy-")) out.delete(name);
  }
  return out;
}

/** A JSON error answer: `{ error, message }`. */
function errorResponse(status: number, error: string, message: string): Response {
  return Response.json({ error, message }, {
    status,
    headers: { "cache-control": "no-store" },
  });
}

function nameOf(metadata: unknown): string | null {
  if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) return null;
  const name = (metadata as { name?: unknown }).name;
  return typeof name === "string" ? name : null;
}

function redacted(metadata: unknown): unknown {
  if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) {
    return metadata;
  }
  if (!Object.hasOwn(metadata, "token")) return metadata;
  const { token: _token, ...rest } = metadata as Record<string, unknown>;
  return rest;
}

/** Compares secrets in time independent of where they differ. */
function sameSecret(given: unknown, expected: string): boolean {
  if (typeof given !== "string") return false;
  const a = new TextEncoder().encode(given);
  const b = new TextEncoder().encode(expected);
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) diff |= (a[i] ?? 0) ^ b[i];
  return diff === 0;
}

function describeAgent(connection: Connection): AgentInfo {
  const rtt = connection.rtt;
  return {
    id: connection.id,
    name: nameOf(connection.metadata),
    metadata: redacted(connection.metadata),
    remoteAddr: connection.remoteAddr,
    connectedAt: connection.connectedAt?.toISOString() ?? null,
    rtt: rtt === undefined ? null : Math.round(rtt * 1000) / 1000,
    inFlight: connection.inFlight,
  };
}

// ---- the runtimes' HTTP servers, described structurally ---------------------

interface DenoLike {
  serve(
    options: { hostname?: string; port?: number; onListen?: (addr: unknown) => void },
    handler: (request: Request, info: DenoServeHandlerInfo) => Response | Promise<Response>,
  ): { addr: { hostname: string; port: number }; shutdown(): Promise<void> };
}

interface BunLike {
  serve(options: {
    hostname?: string;
    port?: number;
    idleTimeout?: number;
    fetch: (
      request: Request,
      server: BunServerLike & { timeout?(request: Request, seconds: number): void },
    ) => Response | undefined | Promise<Response | undefined>;
    websocket: BunWebSocketHandlers;
  }): { hostname: string; port: number; stop(closeActiveConnections?: boolean): unknown };
}

/**
 * Starts a gateway: an HTTP server that accepts agents on a WebSocket path and forwards
 * `/agents/{id-or-name}/…` to them. It listens at once (`Deno.serve` on Deno, `Bun.serve`
 * on Bun); `gateway.addr` has the port.
 *
 * @example Usage
 * ```ts ignore
 * import { startGateway } from "@swaggersocket/swaggersocket/gateway";
 *
 * await using gateway = startGateway({ port: 0 });
 * // An agent dials gateway.agentsUrl with metadata { name: "printer" }, then:
 * const response = await fetch(`${gateway.url}/agents/printer/status`);
 * ```
 *
 * @param options Where to listen, the agents' path, the token and the timeout.
 * @returns The running gateway.
 * @throws {TypeError} If neither `Deno.serve` nor `Bun.serve` exists.
 */
export function startGateway(options: GatewayOptions = {}): Gateway {
  const hostname = options.hostname ?? DEFAULT_GATEWAY_HOSTNAME;
  const port = options.port ?? DEFAULT_GATEWAY_PORT;
  const path = options.path ?? DEFAULT_AGENTS_PATH;
  const timeout = options.timeout ?? DEFAULT_AGENT_TIMEOUT;
  const closeTimeout = options.closeTimeout ?? 5_000;
  const token = options.token;
  const apiToken = options.apiToken;
  const logger = options.logger;
  if (apiToken !== undefined && apiToken.length === 0) {
    throw new TypeError("Invalid apiToken: must not be empty");
  }
  if (!path.startsWith("/")) throw new TypeError(`Invalid agents path: ${path} must start with /`);
  if (!(timeout > 0)) throw new RangeError(`Invalid timeout: ${timeout} must be positive`);

  const server = new WebSocketServer({
    noServer: true,
    path,
    heartbeat: options.heartbeat,
    closeTimeout,
    logger,
    authorize: token === undefined
      ? undefined
      : ({ metadata }) => sameSecret((metadata as { token?: unknown } | null)?.token, token),
  });
  /** Forwarded exchanges still running: aborted if `close()` outlasts its grace period. */
  const inFlight = new Set<AbortController>();

  function findAgent(key: string): Connection | undefined {
    const byId = server.connection(key);
    if (byId) return byId;
    let newest: Connection | undefined;
    for (const connection of server.connections()) {
      if (nameOf(connection.metadata) !== key) continue;
      if (!newest || (connection.connectedAt ?? 0) >= (newest.connectedAt ?? 0)) {
        newest = connection;
      }
    }
    return newest;
  }

  async function forward(
    request: Request,
    agentKey: string,
    rest: string,
    url: URL,
    clientAddr: string,
    credentialHeader: string,
  ): Promise<Response> {
    const agent = findAgent(agentKey);
    if (!agent) {
      return errorResponse(404, "agent_not_found", `No agent with id or name "${agentKey}"`);
    }
    const headers = withoutHopByHop(request.headers);
    if (credentialHeader) headers.delete(credentialHeader);
    const prior = headers.get("x-forwarded-for");
    if (clientAddr) headers.set("x-forwarded-for", prior ? `${prior}, ${clientAddr}` : clientAddr);
    if (!headers.has("x-forwarded-host")) headers.set("x-forwarded-host", url.host);
    if (!headers.has("x-forwarded-proto")) {
      headers.set("x-forwarded-proto", url.protocol.slice(0, -1));
    }
    headers.set("x-forwarded-prefix", `/agents/${encodeURIComponent(agentKey)}`);

    const controller = new AbortController();
    inFlight.add(controller);
    const timer = setTimeout(
      () =>
        controller.abort(
          new DOMException(`The agent did not answer within ${timeout} ms`, "TimeoutError"),
        ),
      timeout,
    );
    // The caller hanging up before the head arrives cancels the agent's exchange too.
    // (After the head, cancelling the response body does that.)
    const onCallerGone = (): void => controller.abort(request.signal.reason);
    request.signal.addEventListener("abort", onCallerGone, { once: true });
    const hasBody = request.method !== "GET" && request.method !== "HEAD" && request.body !== null;
    let response: Response;
    try {
      response = await agent.fetch(rest + url.search, {
        method: request.method,
        headers,
        body: hasBody ? request.body : null,
        signal: controller.signal,
        redirect: "manual",
        // @ts-ignore: `duplex` is required for streaming bodies but missing from some lib.dom versions.
        duplex: "half",
      });
    } catch (error) {
      inFlight.delete(controller);
      const name = (error as Error | undefined)?.name;
      if (name === "TimeoutError" && controller.signal.aborted) {
        logger?.warn("gateway: agent timed out", agent.id, request.method, rest);
        return errorResponse(
          504,
          "agent_timeout",
          `Agent "${agentKey}" did not answer within ${timeout} ms`,
        );
      }
      logger?.warn("gateway: agent failed", agent.id, request.method, rest, error);
      return errorResponse(
        502,
        "agent_unavailable",
        `Agent "${agentKey}" went away before answering: ${(error as Error).message}`,
      );
    } finally {
      clearTimeout(timer);
      request.signal.removeEventListener("abort", onCallerGone);
    }
    const release = (): void => {
      inFlight.delete(controller);
    };
    const body = response.body === null ? null : passThrough(response.body, release);
    if (body === null) release();
    return new Response(body, {
      status: response.status,
      statusText: response.statusText,
      headers: withoutHopByHop(response.headers),
    });
  }

  /**
   * Whether the caller presented the API token: the name of the header that carried it
   * (which is not forwarded, so that it never reaches an agent), `""` when none is needed,
   * or `undefined` when the caller did not.
   */
  function credential(request: Request): string | undefined {
    if (apiToken === undefined) return "";
    for (const name of ["proxy-authorization", "authorization"]) {
      const value = request.headers.get(name);
      if (value === null || !/^bearer /i.test(value)) continue;
      if (sameSecret(value.slice(7).trim(), apiToken)) return name;
    }
    return undefined;
  }

  async function handle(request: Request, clientAddr: string): Promise<Response> {
    const url = new URL(request.url);
    const pathname = url.pathname;
    if (pathname === "/healthz") {
      return new Response("ok\n", {
        headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
      });
    }
    const consumed = credential(request);
    if (consumed === undefined) {
      const response = errorResponse(
        401,
        "unauthorized",
        "This gateway needs its API token: Authorization: Bearer <token>",
      );
      response.headers.set("www-authenticate", 'Bearer realm="swaggersocket gateway"');
      return response;
    }
    if (pathname === "/agents" || pathname === "/agents/") {
      if (request.method !== "GET" && request.method !== "HEAD") {
        return errorResponse(405, "method_not_allowed", "Use GET /agents");
      }
      return Response.json(server.connections().map(describeAgent), {
        headers: { "cache-control": "no-store" },
      });
    }
    const route = pathname.match(/^\/agents\/([^/]+)(\/.*)?$/);
    if (route && UNCARRIED_METHODS.has(request.method.toUpperCase())) {
      // `Request` refuses these on both ends: say so, rather than blame the agent with a 502.
      return errorResponse(
        501,
        "method_not_supported",
        `The gateway cannot carry ${request.method} requests to agents`,
      );
    }
    if (route) {
      let key: string;
      try {
        key = decodeURIComponent(route[1]);
      } catch {
        return errorResponse(400, "bad_request", `Malformed agent id or name: ${route[1]}`);
      }
      return await forward(request, key, route[2] ?? "/", url, clientAddr, consumed);
    }
    if (pathname === "/") {
      return Response.json({
        agents: `${url.origin}/agents`,
        forward: `${url.origin}/agents/{id-or-name}/{path}`,
        connect: `${url.protocol === "https:" ? "wss" : "ws"}://${url.host}${path}`,
      });
    }
    return errorResponse(404, "not_found", `No route for ${request.method} ${pathname}`);
  }

  function isAgentDial(request: Request): boolean {
    return new URL(request.url).pathname === path &&
      request.headers.get("upgrade")?.toLowerCase() === "websocket";
  }

  // The one place that picks a runtime: how to listen.
  const bun = (globalThis as { Bun?: BunLike }).Bun;
  const deno = (globalThis as { Deno?: DenoLike }).Deno;
  let addr: { hostname: string; port: number };
  let stopListening: () => Promise<void>;
  if (bun) {
    const listener = bun.serve({
      hostname,
      port,
      // Requests wait on agents for up to `timeout` and event streams may idle: no idle cut.
      idleTimeout: 0,
      fetch: (request, bunServer) => {
        if (isAgentDial(request)) return server.upgrade(request, bunServer);
        const ip = bunServer.requestIP?.(request);
        return handle(request, ip?.address ?? "");
      },
      websocket: server.websocket,
    });
    addr = { hostname: listener.hostname, port: listener.port };
    stopListening = async () => {
      await listener.stop(true);
    };
  } else if (deno) {
    const listener = deno.serve({ hostname, port, onListen: () => {} }, (request, info) => {
      if (isAgentDial(request)) {
        return server.upgrade(request, info) ??
          errorResponse(500, "upgrade_failed", "WebSocket upgrade failed");
      }
      return handle(request, info.remoteAddr.hostname);
    });
    addr = { hostname: listener.addr.hostname, port: listener.addr.port };
    stopListening = () => listener.shutdown();
  } else {
    throw new TypeError("Cannot start the gateway: neither Deno.serve nor Bun.serve exists");
  }

  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let closing: Promise<void> | undefined;
  const gateway: Gateway = {
    addr,
    url: `http://${host}:${addr.port}`,
    agentsUrl: `ws://${host}:${addr.port}${path}`,
    server,
    agents: () => server.connections().map(describeAgent),
    close: () => {
      closing ??= (async () => {
        await server.close();
        // Whatever still streams (an endless event stream) is cut now.
        for (const controller of inFlight) controller.abort();
        inFlight.clear();
        await stopListening();
      })();
      return closing;
    },
    [Symbol.asyncDispose]: () => gateway.close(),
  };
  return gateway;
}

/**
 * Passes `body` through, calling `done` once when it ends, errors or is cancelled.
 * (A `TransformStream` would not forward a cancel from the caller to the agent.)
 */
function passThrough(
  body: ReadableStream<Uint8Array>,
  done: () => void,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    done();
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done: end, value } = await reader.read();
        if (end) {
          finish();
          controller.close();
        } else {
          controller.enqueue(value);
        }
      } catch (error) {
        finish();
        controller.error(error);
      }
    },
    cancel(reason) {
      finish();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

// ---- script mode ----------------------------------------------------------

async function main(): Promise<void> {
  const runtime = scriptRuntime();
  const { args } = runtime;
  const from = (name: string): string | undefined =>
    option(
      args,
      name,
      runtime.env(`SWAGGERSOCKET_GATEWAY_${name.toUpperCase().replaceAll("-", "_")}`),
    );
  if (args.includes("--help") || args.includes("-h")) {
    console.log(
      "usage: gateway.ts [--hostname 127.0.0.1] [--port 8080] [--path /agents/connect]\n" +
        "                  [--token SECRET] [--api-token SECRET] [--timeout MS] [--demo]\n" +
        "                  [--exit-after MS]\n" +
        "env: SWAGGERSOCKET_GATEWAY_{HOSTNAME,PORT,PATH,TOKEN,API_TOKEN,TIMEOUT}",
    );
    return;
  }
  const portText = from("port");
  const timeoutText = from("timeout");
  const gateway = startGateway({
    hostname: from("hostname"),
    port: portText === undefined ? undefined : Number(portText),
    path: from("path"),
    token: from("token"),
    apiToken: from("api-token"),
    timeout: timeoutText === undefined ? undefined : Number(timeoutText),
  });
  console.log(`gateway listening on ${gateway.url}`);
  console.log(`agents dial ${gateway.agentsUrl}`);
  (async () => {
    for await (const event of gateway.server.events()) {
      if (event.type === EventType.ConnectionReceived) {
        const metadata = redacted(event.connection?.metadata);
        console.log(`agent connected ${event.connectionId} ${JSON.stringify(metadata)}`);
      } else if (event.type === EventType.ConnectionClosed) {
        console.log(`agent disconnected ${event.connectionId}`);
      }
    }
  })();

  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await Promise.race([gateway.close(), new Promise((resolve) => setTimeout(resolve, 10_000))]);
    runtime.exit(0);
  };
  runtime.onSignal("SIGINT", stop);
  runtime.onSignal("SIGTERM", stop);
  const exitAfter = Number(option(args, "exit-after", undefined) ?? 0);
  if (exitAfter > 0) setTimeout(stop, exitAfter);

  if (args.includes("--demo")) {
    const { startAgent } = await import("./agent.ts");
    // Subscribed first: the agent's end of the handshake completes a moment before the
    // gateway's, and the curl lines must work once printed.
    const events = gateway.server.events();
    const agent = startAgent({
      url: gateway.agentsUrl,
      name: "demo",
      token: from("token"),
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
    // The demo's lines carry the API token so that they work as printed.
    const apiToken = from("api-token");
    const curl = apiToken === undefined ? "curl" : `curl -H 'Authorization: Bearer ${apiToken}'`;
    const base = gateway.url;
    console.log(`demo agent connected ${connection.id}`);
    console.log("");
    console.log("Try:");
    for (
      const line of [
        `${curl} ${base}/agents`,
        `${curl} ${base}/agents/demo/hello`,
        `${curl} ${base}/agents/demo/time`,
        `${curl} -X POST --data-binary 'hello, agent' ${base}/agents/demo/echo`,
        `${curl} -N ${base}/agents/demo/events`,
        `${curl} -s '${base}/agents/demo/bytes?n=1048576' | wc -c`,
        `${curl} ${base}/agents/${connection.id}/hello`,
      ]
    ) {
      console.log(`  ${line}`);
    }
    console.log("");
    console.log("Ctrl-C stops.");
  }
}

if (import.meta.main) {
  // Not awaited at the top level: a promise that never settles there spins Bun (oven-sh/bun#14951).
  main().catch((error) => {
    console.error(`gateway: ${(error as Error).message}`);
    scriptRuntime().exit(1);
  });
}
