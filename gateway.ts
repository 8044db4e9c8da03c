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
 * Ids and names are separate namespaces. A `{id-or-name}` shaped like a connection id (a
 * ULID: 26 characters of Crockford base32, any case) is looked up only as an id; any other
 * only as the `name` in an agent's metadata. A name is 1–128 letters, digits, `.`, `_`, `~`
 * or `-`, starting with a letter or digit (`^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$`, case
 * matters), and must not be ULID-shaped; an agent sending any other `name` is refused with
 * 4004. An agent may send no name (it is then reached by id only). One connection holds a
 * name at a time (see "Agent identity" below). A plain HTTP request to the agents' path (no
 * `Upgrade: websocket`) is routed like any other, so an agent may even be named `connect`.
 *
 * Forwarding is faithful, as a well-configured nginx `proxy_pass` is:
 *
 * - **The target**: the agent gets the rest of the target exactly as the caller sent it
 *   (`info.target`; `/agents/a/x/../y//z?` arrives as `/x/../y//z?`), and the agent is chosen
 *   from the raw path. A rest whose dot segments (`..`, `%2e%2e`, with `/` or `\`) would
 *   climb out of the agent's prefix is refused with 400, never routed elsewhere. The same on
 *   Deno and Bun: the gateway serves HTTP with `node:http`, whose parser hands over the target
 *   as sent. That parser refuses raw non-ASCII bytes in a target (RFC 9112 allows none;
 *   clients percent-encode them) with 400.
 * - **Framing**: a `Content-Length` body stays one, a chunked one stays chunked, in both
 *   directions; bodies of GET, HEAD, DELETE, OPTIONS and any other method pass (an agent's
 *   handler finds a GET or HEAD body in `info.body`); nothing is invented for a bodyless
 *   request. The gateway speaks HTTP/1.1 (over TLS too: it offers no HTTP/2).
 * - **Headers** pass unchanged but for hop-by-hop ones (`connection`, `keep-alive`,
 *   `proxy-*`, `te`, `trailer`, `transfer-encoding`, `upgrade`, any listed in `Connection`),
 *   `Expect` (the gateway's server answered it), the `apiToken` header and `Host` (the agent's
 *   tunnel sends its upstream's; `preserveHost` passes the caller's). The gateway sets
 *   `X-Forwarded-For`, `-Host`, `-Proto`, `-Prefix` (`/agents/{id-or-name}`) and
 *   `Forwarded`, replacing what the caller sent (callers from `trustedProxies` are appended
 *   to), and appends itself to `Via` (`1.1 swaggersocket`).
 * - **Rewriting** (`rewrite`, default on): a root-relative `Location`, or one on the
 *   gateway's own origin, gets the `/agents/{id-or-name}` prefix, as does each `Set-Cookie`
 *   `Path`; so redirects and cookies stay with their agent.
 *
 * Errors come back as JSON `{ error, message }`:
 *
 * | Status | `error` | When |
 * |---|---|---|
 * | 400 | `bad_request` | a path that climbs out of its agent's prefix, or a malformed agent key |
 * | 401 | `unauthorized` | with `apiToken`, a request without `Authorization` (or `Proxy-Authorization`) `Bearer <apiToken>` |
 * | 404 | `not_found` / `agent_not_found` | no such route / no agent with that id or name |
 * | 400 | `bad_request` | a request `node:http` cannot parse (a malformed request line or header) |
 * | 501 | `method_not_supported` | `CONNECT`, `TRACE` or `TRACK`, which web `Request`s cannot carry, and methods `node:http` does not know (its `METHODS`: the registered ones, WebDAV's, `PURGE`, `QUERY`, …) |
 * | 502 | `agent_unavailable` | the agent went away (or reset the exchange) before answering |
 * | 504 | `agent_timeout` | no response head within `timeout` (default 30 s); bodies may stream for longer |
 *
 * With `token` set, an agent must present it in its metadata (`{ name, token }`); others
 * are refused during the handshake (close code 4003: the agent gets a `HandshakeError`
 * that is not retryable, so it does not hammer the gateway). The token is never listed.
 *
 * **Agent identity.** With `credentialsFile` (`--credentials FILE`, or
 * `SWAGGERSOCKET_GATEWAY_CREDENTIALS`), each agent has its own token, bound to its name: one
 * line per agent, `NAME sha256:HEX` (the SHA-256 of the token, 64 hex digits), `#` comments
 * and blank lines allowed, each name once. `gateway.ts --hash-token NAME` reads a token on
 * standard input and prints its line (so does `printf %s "$TOKEN" | sha256sum`). Tokens are
 * random secrets, not passwords (make them with `openssl rand -hex 32`): a plain SHA-256 of
 * one cannot be reversed, and a slow hash would only make each handshake cost more. A
 * listed name needs its own token; if `token` is set too, it admits any name the file does
 * not list, else unlisted names are refused (4003). A bad file stops the gateway at start
 * with the file and line. `reloadCredentials()` (and SIGHUP, when run as a script) reads it
 * again: a file that fails to load leaves the old table in force; agents whose entry was
 * removed or changed are closed with 4003 (terminal: revoking a credential stops the agent).
 *
 * One connection holds a name at a time. An agent that resumes its own connection (it
 * reconnects with its resume token while the gateway still holds the old, half-open socket)
 * keeps its name and id at once: the old socket gets 4012. Otherwise a second connection for
 * a held name replaces the holder only when both presented the same per-agent token (the
 * agent restarted): the old connection is closed with 4015 and does not reconnect, so two
 * processes sharing one credential cannot take the name from each other forever. Any other
 * claim (the shared `token`, no token, another credential) is refused with 4014, which the
 * agent retries with backoff: the holder may be a dead connection that the heartbeat ends
 * soon. Of simultaneous claims exactly one wins. The close codes agents see:
 *
 * | Code | Name | Terminal | When |
 * |---|---|---|---|
 * | 4003 | `Unauthorized` | yes | missing or wrong token; an unlisted name without the shared token; a credential revoked by a reload |
 * | 4004 | `InvalidMetadata` | yes | a `name` that is not a string, breaks the name rule or is ULID-shaped |
 * | 4014 | `NameInUse` | no | the name is held by another connection, which was not replaced |
 * | 4015 | `Superseded` | yes | a newer connection with the same per-agent token took the name |
 *
 * With `apiToken` set, every HTTP caller must present that one (`GET /healthz` aside, which
 * answers `ok` to anyone), as a bearer token in `Authorization` or `Proxy-Authorization`;
 * the gateway removes it before forwarding.
 *
 * Run it as a script, under Deno or Bun:
 *
 * ```sh
 * deno run -A gateway.ts [--hostname 127.0.0.1] [--port 8080] [--path /agents/connect]
 *                        [--token SECRET] [--timeout 30000] [--demo] [--exit-after MS]
 *                        [--cert cert.pem --key key.pem] [--ca ca.pem]
 *                        [--credentials FILE] [--trusted-proxies 10.0.0.0/8,::1]
 *                        [--preserve-host] [--no-rewrite]
 * deno run -A gateway.ts --hash-token NAME < token.txt   # prints NAME's credentials line
 * bun gateway.ts …the same flags…
 * ```
 *
 * With `--cert FILE` and `--key FILE` (PEM; the certificate file may hold a chain) it serves
 * `https` and `wss` itself (`node:https`), on Deno and on Bun: no separate TLS terminator is
 * needed. Agents
 * then dial `wss://…/agents/connect` (or the `https://` base), with `--ca FILE` when their
 * runtime does not trust the certificate's issuer (see `agent.ts`), and forwarded requests
 * carry `x-forwarded-proto: https`. With `--demo`, `--ca` is the CA that the demo agent and
 * the printed `curl` lines trust (default: the `--cert` file itself, which fits a self-signed
 * certificate).
 *
 * Each flag may also come from the environment: `SWAGGERSOCKET_GATEWAY_HOSTNAME`, `…_PORT`,
 * `…_PATH`, `…_TOKEN`, `…_API_TOKEN`, `…_TIMEOUT`, `…_CERT`, `…_KEY`, `…_CA`,
 * `…_CREDENTIALS`, `…_TRUSTED_PROXIES` (flags win). `--demo` also starts an agent named `demo`
 * inside the gateway process (the demo API of `agent.ts`) and prints `curl` lines to try.
 *
 * @example Usage
 * ```ts ignore
 * import { startGateway } from "@swaggersocket/swaggersocket/gateway";
 *
 * const gateway = await startGateway({ port: 8080, token: "s3cret" });
 * console.log(`agents dial ${gateway.agentsUrl}; callers use ${gateway.url}/agents`);
 * // later
 * await gateway.close();
 * ```
 *
 * @module
 */

import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Buffer } from "node:buffer";
// @ts-types="@types/ws"
import { WebSocketServer as WsServer } from "ws";
import {
  type Connection,
  EventType,
  type HeartbeatOptions,
  type Logger,
  type TlsOptions,
  WebSocketServer,
} from "./mod.ts";
import { checkTls } from "./_tls.ts";
import { addressMatcher } from "./_address_match.ts";
import { agentRequestHeaders, type Hop, withoutHopByHop } from "./_proxy_headers.ts";
import { mapResponsePaths, type PathMap } from "./_path_rewrite.ts";
import { type AgentRoute, agentRoute, rawTarget, splitTarget } from "./_raw_target.ts";
import { type CallerRequest, listenHttp } from "./runtime/_node_http.ts";
import { adaptWsSocket } from "./runtime/_ws.ts";
import { RUNTIME } from "./runtime/mod.ts";
import { upgradedSockets } from "./server.ts";
import { DEFAULT_SETTINGS } from "./protocol/handshake.ts";
import { option } from "./_script.ts";
import { AgentAdmission, type CredentialsReload } from "./_agent_admission.ts";
import { credentialLine } from "./_credentials.ts";
import { timingSafeEqual } from "./_timing_safe_equal.ts";

export type { CredentialsReload } from "./_agent_admission.ts";
export { CredentialsFileError } from "./_credentials.ts";

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
  ConnectionOptions,
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
  TlsOptions,
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
  /**
   * Shared secret agents must send as `token` in their metadata. With `credentialsFile`
   * too, it admits only names the file does not list. Default: none required.
   */
  token?: string;
  /**
   * A file binding agent names to their own tokens, one `NAME sha256:HEX` line each (the
   * SHA-256 of the token in hex; `#` comments and blank lines allowed). Listed names need
   * their token; unlisted ones get in only with `token`. Read at start (a bad file throws a
   * `CredentialsFileError` naming the line) and by `gateway.reloadCredentials()`.
   * Default: none.
   */
  credentialsFile?: string;
  /**
   * Secret every HTTP caller must present, as `Authorization: Bearer <apiToken>` or, so that
   * callers keep `Authorization` for the agent's API, `Proxy-Authorization: Bearer
   * <apiToken>`; else 401. `GET /healthz` needs none. The gateway consumes it: it is not
   * forwarded to agents. Default: none required.
   */
  apiToken?: string;
  /**
   * Addresses and CIDR blocks (`10.0.0.0/8`, `::1`) of proxies in front of the gateway whose
   * forwarding headers are believed: from them, `X-Forwarded-For` and `Forwarded` are
   * appended to and `X-Forwarded-Host` and `-Proto` kept (and used for rewriting). From
   * anyone else those headers are replaced. Default: none.
   */
  trustedProxies?: string[];
  /**
   * Send agents the caller's `Host` (a tunnel passes it to its upstream), as nginx's
   * `proxy_set_header Host $host`. Default `false`: the tunnel sends its upstream's own host
   * (`X-Forwarded-Host` carries the caller's either way).
   */
  preserveHost?: boolean;
  /**
   * Rewrite what points into the agent's own root, as nginx's `proxy_redirect default` and
   * `proxy_cookie_path` do: a root-relative `Location` (or one on the gateway's own origin)
   * gets the `/agents/{agent}` prefix, and so does each `Set-Cookie` `Path`. Default `true`.
   */
  rewrite?: boolean;
  /** Milliseconds an agent has to send a response head before the caller gets 504. Default 30 000. */
  timeout?: number;
  /** Heartbeat timing on agents' connections. */
  heartbeat?: HeartbeatOptions;
  /** Milliseconds `close()` lets in-flight exchanges finish. Default 5 000. */
  closeTimeout?: number;
  /** Where log lines go (agents connecting and leaving, failures). Default: nowhere. */
  logger?: Logger;
  /**
   * Serve `https` and `wss` directly with this certificate and key, both PEM text (not file
   * names; the CLI's `--cert` and `--key` read the files), on Deno and on Bun. `gateway.url`
   * then starts with `https://`, `gateway.agentsUrl` with `wss://`, and forwarded requests
   * carry `x-forwarded-proto: https`. Agents whose runtime does not trust the certificate's
   * issuer pass it as `caCerts` (`--ca FILE`). Default: plain `http` and `ws`.
   *
   * @example Usage
   * ```ts ignore
   * const gateway = await startGateway({
   *   port: 8443,
   *   tls: { cert: await Deno.readTextFile("cert.pem"), key: await Deno.readTextFile("key.pem") },
   * });
   * console.log(gateway.agentsUrl); // wss://127.0.0.1:8443/agents/connect
   * ```
   */
  tls?: TlsOptions;
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
  /** Its HTTP base URL, e.g. `http://127.0.0.1:8080` (`https://` with `tls`). */
  readonly url: string;
  /**
   * The WebSocket URL agents dial, e.g. `ws://127.0.0.1:8080/agents/connect` (`wss://` with
   * `tls`).
   */
  readonly agentsUrl: string;
  /** The swaggersocket server holding the agents' connections (events, lookups). */
  readonly server: WebSocketServer;
  /** The connected agents, as `GET /agents` lists them. */
  agents(): AgentInfo[];
  /**
   * Reads `credentialsFile` again (the script does on SIGHUP). The new table applies at
   * once: connected agents whose entry was removed or changed are closed with 4003 and do
   * not reconnect. If the file cannot be read or parsed, the old table stays in force.
   *
   * @returns How many names the file lists, and how many agents were closed.
   * @throws {TypeError} If the gateway has no `credentialsFile`.
   * @throws {CredentialsFileError} If the file cannot be read or a line is not an entry.
   */
  reloadCredentials(): Promise<CredentialsReload>;
  /** Stops accepting, lets in-flight exchanges finish (bounded), closes agents and the listener. */
  close(): Promise<void>;
  /** Same as `close()`; for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Methods that web `Request`s refuse (the Fetch standard's forbidden methods). */
const UNCARRIED_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);

export { withoutHopByHop };

/** A JSON error answer: `{ error, message }`. */
function errorResponse(status: number, error: string, message: string): Response {
  return jsonResponse({ error, message }, status);
}

/** A JSON answer of the gateway's own, with its length. */
function jsonResponse(value: unknown, status = 200): Response {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  return new Response(bytes, {
    status,
    headers: {
      "content-type": "application/json",
      "content-length": `${bytes.length}`,
      "cache-control": "no-store",
    },
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

/**
 * Starts a gateway: an HTTP server that accepts agents on a WebSocket path and forwards
 * `/agents/{id-or-name}/…` to them. It serves with `node:http` (`node:https` with `tls`) on
 * Deno and on Bun alike, which hands over what a reverse proxy needs and the runtimes' own
 * servers do not (the raw target, a GET's body, a streamed body's length); agents' sockets
 * are upgraded by the `ws` package. It resolves once listening; `gateway.addr` has the port.
 *
 * @example Usage
 * ```ts ignore
 * import { startGateway } from "@swaggersocket/swaggersocket/gateway";
 *
 * await using gateway = await startGateway({ port: 0 });
 * // An agent dials gateway.agentsUrl with metadata { name: "printer" }, then:
 * const response = await fetch(`${gateway.url}/agents/printer/status`);
 * ```
 *
 * @param options Where to listen, the agents' path, the token and the timeout.
 * @returns The running gateway, once it listens.
 * @throws {TypeError} If an option is invalid or `tls` is not PEM text.
 * @throws {RangeError} If `timeout` is not positive.
 * @throws {CredentialsFileError} If `credentialsFile` cannot be read or a line is not an entry.
 * @throws {Error} If it cannot listen (`EADDRINUSE`, …).
 */
export async function startGateway(options: GatewayOptions = {}): Promise<Gateway> {
  const hostname = options.hostname ?? DEFAULT_GATEWAY_HOSTNAME;
  const port = options.port ?? DEFAULT_GATEWAY_PORT;
  const path = options.path ?? DEFAULT_AGENTS_PATH;
  const timeout = options.timeout ?? DEFAULT_AGENT_TIMEOUT;
  const closeTimeout = options.closeTimeout ?? 5_000;
  const token = options.token;
  const apiToken = options.apiToken;
  const logger = options.logger;
  const isTrustedProxy = addressMatcher(options.trustedProxies ?? []);
  const preserveHost = options.preserveHost ?? false;
  const rewrite = options.rewrite ?? true;
  const tls = options.tls === undefined ? undefined : checkTls(options.tls, "tls");
  /**
   * `"https"` when the gateway serves TLS itself, else `"http"`: the scheme of `gateway.url`
   * (`wss`/`ws` for `agentsUrl`), and what `x-forwarded-proto` says to agents.
   */
  const protocol: "http" | "https" = tls ? "https" : "http";
  if (apiToken !== undefined && apiToken.length === 0) {
    throw new TypeError("Invalid apiToken: must not be empty");
  }
  if (!path.startsWith("/")) throw new TypeError(`Invalid agents path: ${path} must start with /`);
  if (!(timeout > 0)) throw new RangeError(`Invalid timeout: ${timeout} must be positive`);
  const admission = new AgentAdmission<Connection>({
    token,
    credentialsFile: options.credentialsFile,
    logger,
  });

  const server = new WebSocketServer({
    noServer: true,
    path,
    heartbeat: options.heartbeat,
    closeTimeout,
    logger,
    // Names, tokens and who holds which name: see `_agent_admission.ts`.
    authorize: (context) => admission.authorize(context),
  });
  /** Forwarded exchanges still running: aborted if `close()` outlasts its grace period. */
  const inFlight = new Set<AbortController>();

  function findAgent(key: string): Connection | undefined {
    // An id-shaped key only by id, any other only by name.
    return admission.find(key, (id) => server.connection(id));
  }

  async function forward(request: CallerRequest, route: AgentRoute, hop: Hop): Promise<Response> {
    const agentKey = route.key;
    const agent = findAgent(agentKey);
    if (!agent) {
      return errorResponse(404, "agent_not_found", `No agent with id or name "${agentKey}"`);
    }
    const headers = agentRequestHeaders(request.headers, hop);
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
    let response: Response;
    try {
      response = await agent.forward({
        method: request.method,
        target: route.target,
        headers,
        body: request.body,
        signal: controller.signal,
      });
    } catch (error) {
      inFlight.delete(controller);
      const name = (error as Error | undefined)?.name;
      if (name === "TimeoutError" && controller.signal.aborted) {
        logger?.warn("gateway: agent timed out", agent.id, request.method, route.target);
        return errorResponse(
          504,
          "agent_timeout",
          `Agent "${agentKey}" did not answer within ${timeout} ms`,
        );
      }
      logger?.warn("gateway: agent failed", agent.id, request.method, route.target, error);
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
    const out = withoutHopByHop(response.headers);
    if (rewrite) mapResponsePaths(out, gatewayPaths(request.headers, hop));
    const init = { status: response.status, statusText: response.statusText, headers: out };
    if (response.body === null) {
      release();
      return new Response(null, init);
    }
    return new Response(passThrough(response.body, release), init);
  }

  /** Where a response's root-relative paths go: under the agent's prefix on the gateway. */
  function gatewayPaths(headers: Headers, hop: Hop): PathMap {
    const host = (hop.trusted && headers.get("x-forwarded-host")) || hop.host;
    const proto = (hop.trusted && headers.get("x-forwarded-proto")) || hop.proto;
    let origin = "null";
    try {
      origin = new URL(`${proto}://${host}`).origin;
    } catch {
      // A Host no URL can have: only root-relative paths are mapped.
    }
    return { origin, from: "/", to: `${hop.prefix}/` };
  }

  /**
   * Whether the caller presented the API token: the name of the header that carried it
   * (which is not forwarded, so that it never reaches an agent), `""` when none is needed,
   * or `undefined` when the caller did not.
   */
  function credential(request: CallerRequest): string | undefined {
    if (apiToken === undefined) return "";
    for (const name of ["proxy-authorization", "authorization"]) {
      const value = request.headers.get(name);
      if (value === null || !/^bearer /i.test(value)) continue;
      if (timingSafeEqual(value.slice(7).trim(), apiToken)) return name;
    }
    return undefined;
  }

  async function handle(request: CallerRequest): Promise<Response> {
    // Routed on the target as the caller sent it: see _raw_target.ts.
    const target = rawTarget(request.target);
    const rawPath = splitTarget(target).path;
    if (rawPath === "/healthz") {
      return new Response("ok\n", {
        headers: {
          "content-type": "text/plain; charset=utf-8",
          "content-length": "3",
          "cache-control": "no-store",
        },
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
    if (rawPath === "/agents" || rawPath === "/agents/") {
      if (request.method !== "GET" && request.method !== "HEAD") {
        return errorResponse(405, "method_not_allowed", "Use GET /agents");
      }
      return jsonResponse(server.connections().map(describeAgent));
    }
    const route = agentRoute(target, "/agents/");
    if (route === "malformed_key") {
      return errorResponse(400, "bad_request", `Malformed agent id or name in ${rawPath}`);
    }
    if (route === "climbs_out") {
      return errorResponse(
        400,
        "bad_request",
        `The path ${rawPath} climbs out of its agent's prefix with dot segments`,
      );
    }
    if (route) {
      if (UNCARRIED_METHODS.has(request.method.toUpperCase())) {
        // `Request` refuses these on both ends: say so, rather than blame the agent with a 502.
        return errorResponse(
          501,
          "method_not_supported",
          `The gateway cannot carry ${request.method} requests to agents`,
        );
      }
      const hop: Hop = {
        clientAddr: request.clientAddr,
        host: request.headers.get("host") ?? "",
        proto: protocol,
        prefix: `/agents/${encodeURIComponent(route.key)}`,
        trusted: isTrustedProxy(request.clientAddr),
        preserveHost,
        credentialHeader: consumed,
      };
      return await forward(request, route, hop);
    }
    if (rawPath === "/") {
      const host = request.headers.get("host") ?? gateway.addr.hostname;
      return jsonResponse({
        agents: `${protocol}://${host}/agents`,
        forward: `${protocol}://${host}/agents/{id-or-name}/{path}`,
        connect: `${tls ? "wss" : "ws"}://${host}${path}`,
      });
    }
    return errorResponse(404, "not_found", `No route for ${request.method} ${rawPath}`);
  }

  const sockets = new WsServer({
    noServer: true,
    // `ws` refuses a larger message itself (1009) before buffering it whole.
    maxPayload: DEFAULT_SETTINGS.maxMessageBytes,
  });

  /** Takes an agent's dial; any other upgrade request is answered as an ordinary one. */
  function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const target = rawTarget(req.url ?? "/");
    if (splitTarget(target).path !== path) return false;
    if (req.headers.upgrade?.toLowerCase() !== "websocket") return false;
    const headers = new Headers();
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
    }
    // What `authorize` sees: the dial's headers and URL (it has no body).
    const request = new Request(new URL(target, gateway.url), { headers });
    const refusal = upgradedSockets.check(server, request);
    if (refusal) {
      socket.end(`HTTP/1.1 ${refusal.status} ${refusal.statusText}\r\nConnection: close\r\n\r\n`);
      return true;
    }
    const peer = req.socket;
    const remoteAddr = { hostname: peer.remoteAddress ?? "", port: peer.remotePort ?? 0 };
    sockets.handleUpgrade(req, socket, head, (ws) => {
      upgradedSockets.accept(server, adaptWsSocket(ws), request, remoteAddr);
    });
    return true;
  }

  /** What answers a request that `node:http` could not parse. */
  function unparsable(method: string | undefined): Response {
    return method === undefined
      ? errorResponse(400, "bad_request", "The request could not be parsed")
      : errorResponse(
        501,
        "method_not_supported",
        `The gateway cannot carry ${method} requests to agents`,
      );
  }

  const front = await listenHttp({ hostname, port, tls, handler: handle, onUpgrade, unparsable });
  const addr = front.addr;

  /** Closes the agents' sockets: lets their close frames go out (bounded), then cuts them. */
  async function closeSockets(): Promise<void> {
    const open = [...sockets.clients].filter((ws) => ws.readyState !== ws.CLOSED);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(open.map((ws) => new Promise((resolve) => ws.once("close", resolve)))),
      new Promise((resolve) => timer = setTimeout(resolve, 1_000)),
    ]);
    clearTimeout(timer);
    for (const ws of sockets.clients) ws.terminate();
  }

  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let closing: Promise<void> | undefined;
  const gateway: Gateway = {
    addr,
    url: `${protocol}://${host}:${addr.port}`,
    agentsUrl: `${tls ? "wss" : "ws"}://${host}:${addr.port}${path}`,
    server,
    agents: () => server.connections().map(describeAgent),
    reloadCredentials: () => admission.reloadCredentials(),
    close: () => {
      closing ??= (async () => {
        await server.close();
        // Whatever still streams (an endless event stream) is cut now.
        for (const controller of inFlight) controller.abort();
        inFlight.clear();
        await closeSockets();
        await front.stop();
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
  const runtime = RUNTIME.script();
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
        "                  [--exit-after MS] [--cert FILE --key FILE] [--ca FILE]\n" +
        "                  [--credentials FILE] [--trusted-proxies CIDR,...]\n" +
        "                  [--preserve-host] [--no-rewrite]\n" +
        "       gateway.ts --hash-token NAME < token   (prints NAME's credentials line)\n" +
        "env: SWAGGERSOCKET_GATEWAY_{HOSTNAME,PORT,PATH,TOKEN,API_TOKEN,TIMEOUT,CERT,KEY,CA,\n" +
        "                            CREDENTIALS,TRUSTED_PROXIES}\n" +
        "--credentials: per-agent tokens, one 'NAME sha256:HEX' line each; SIGHUP reloads it\n" +
        "--cert/--key: serve https and wss with this PEM certificate (chain) and key\n" +
        "--trusted-proxies: addresses/CIDR blocks whose X-Forwarded-* and Forwarded are kept\n" +
        "--preserve-host: agents get the caller's Host; --no-rewrite: leave Location and\n" +
        "      Set-Cookie paths as the agent sent them\n" +
        "--ca: with --demo, the CA the demo agent and the printed curl lines trust\n" +
        "      (default: the --cert file itself)",
    );
    return;
  }
  if (args.includes("--hash-token")) {
    const name = option(args, "hash-token", undefined);
    if (name === undefined || name.startsWith("--")) {
      throw new TypeError("--hash-token needs the agent's name; the token comes on standard input");
    }
    // One trailing newline (from `echo`, or a file) is not part of the token.
    const token = (await runtime.readStdin()).replace(/\r?\n$/, "");
    console.log(await credentialLine(name, token));
    return;
  }
  const portText = from("port");
  const timeoutText = from("timeout");
  const credentialsFile = from("credentials");
  const certFile = from("cert");
  const keyFile = from("key");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new TypeError("--cert and --key go together: give both PEM files, or neither");
  }
  const readPem = async (flag: string, file: string): Promise<string> => {
    try {
      return await runtime.readTextFile(file);
    } catch (error) {
      throw new TypeError(`Cannot read --${flag} ${file}: ${(error as Error).message}`);
    }
  };
  const tls = certFile !== undefined && keyFile !== undefined
    ? { cert: await readPem("cert", certFile), key: await readPem("key", keyFile) }
    : undefined;
  const gateway = await startGateway({
    tls,
    hostname: from("hostname"),
    port: portText === undefined ? undefined : Number(portText),
    path: from("path"),
    token: from("token"),
    credentialsFile,
    apiToken: from("api-token"),
    timeout: timeoutText === undefined ? undefined : Number(timeoutText),
    trustedProxies: from("trusted-proxies")?.split(",").map((entry) => entry.trim())
      .filter((entry) => entry !== ""),
    preserveHost: args.includes("--preserve-host"),
    rewrite: !args.includes("--no-rewrite"),
  });
  if (credentialsFile !== undefined) {
    // Only with a file: otherwise SIGHUP keeps its default (ending the process).
    const reload = (): void => {
      gateway.reloadCredentials().then(
        ({ names, revoked }) =>
          console.log(`credentials reloaded: ${names} names, ${revoked} agents revoked`),
        (error: Error) =>
          console.error(`gateway: credentials not reloaded, the old ones stay: ${error.message}`),
      );
    };
    try {
      runtime.onSignal("SIGHUP", reload);
    } catch (error) {
      // Windows has no SIGHUP (Deno refuses the listener): embedders call reloadCredentials().
      console.error(`gateway: no SIGHUP reload here: ${(error as Error).message}`);
    }
  }
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
    // Over TLS the demo agent trusts --ca, else the gateway's own certificate file.
    const demoCaFile = tls ? from("ca") ?? certFile : undefined;
    const agent = startAgent({
      url: gateway.agentsUrl,
      name: "demo",
      token: from("token"),
      ...(demoCaFile ? { caCerts: [await readPem("ca", demoCaFile)] } : {}),
      // A demo agent that cannot connect (a CA that does not fit) says why instead of hanging.
      logger: { debug() {}, info() {}, warn: console.warn, error: console.error },
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
    // The API token is a secret: the lines name it by its variable, never print it.
    const apiToken = from("api-token");
    const curl = [
      "curl",
      ...(demoCaFile ? [`--cacert ${demoCaFile}`] : []),
      ...(apiToken === undefined
        ? []
        : ['-H "Authorization: Bearer $SWAGGERSOCKET_GATEWAY_API_TOKEN"']),
    ].join(" ");
    const base = gateway.url;
    console.log(`demo agent connected ${connection.id}`);
    console.log("");
    console.log("Try:");
    if (apiToken !== undefined) {
      console.log("  (with SWAGGERSOCKET_GATEWAY_API_TOKEN set to the API token in your shell)");
    }
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
    RUNTIME.script().exit(1);
  });
}
