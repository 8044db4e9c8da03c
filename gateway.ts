/**
 * The gateway: agents dial in over WebSocket, everyone else calls them over plain HTTP.
 *
 * An agent (see `agent.ts`) behind NAT or a firewall dials the gateway's WebSocket
 * path; the gateway then exposes every connected agent's API on its own HTTP port:
 *
 * | Route | What it does |
 * |---|---|
 * | `GET /healthz` | `ok` (no token needed) |
 * | `GET /readyz` | `ready`, or 503 `draining` once `close()` has begun (no token needed) |
 * | `GET /metrics` | Prometheus text format: agents, connections by close reason, requests by route and status class, latency, bytes, in-flight requests, heartbeat RTT (with `apiToken`, it needs the token) |
 * | `GET /dashboard` | a live page of the agents and the latest requests (server-sent events from `/dashboard/events`); with `apiToken`, a browser gives it as a Basic password |
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
 * | 4015 | `Superseded` | yes | a newer connection with the same per-agent token took the name, or (in a cluster) another instance holds the agent now |
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
 *                        [--preserve-host] [--no-rewrite] [--idle-timeout MS]
 *                        [--drain-timeout MS] [--log-format pretty|json] [--log-level info]
 *                        [--config gateway.json]
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
 * Each flag may also come from the environment (`SWAGGERSOCKET_GATEWAY_<FLAG>`, e.g.
 * `…_API_TOKEN`) or a JSON `--config` file (flags win, then the environment); `--help` lists
 * them all with their defaults. Flags are checked strictly: an unknown one, a missing value or
 * a bad port is one line naming it and exit code 2; a port in use is one line naming the
 * address, exit code 1. It logs one line per event on standard output. SIGTERM and SIGINT
 * drain: new agents and callers are refused, in-flight requests get `--drain-timeout`, then it
 * exits 0. `--demo` also starts an agent named `demo` inside the gateway process (the demo API
 * of `agent.ts`) and prints `curl` lines to try.
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

export { startGateway } from "./gateway/_start_gateway.ts";
export type { Gateway, GatewayOptions } from "./gateway/_start_gateway.ts";
export type { AgentInfo } from "./gateway/_agent_info.ts";
export type { ClusterOptions } from "./gateway/_cluster.ts";
export type { RedisLike } from "./cluster/_registry.ts";
export {
  DEFAULT_AGENT_TIMEOUT,
  DEFAULT_AGENTS_PATH,
  DEFAULT_GATEWAY_HOSTNAME,
  DEFAULT_GATEWAY_PORT,
} from "./gateway/_defaults.ts";
export { withoutHopByHop } from "./_hop_by_hop.ts";
export type { CredentialsReload } from "./gateway/_admission.ts";
export { CredentialsFileError } from "./gateway/_credentials.ts";

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

if (import.meta.main) {
  // The command line lives in cli/gateway.ts; a library import does not load it.
  import("./cli/gateway.ts").then(({ runGateway }) => runGateway());
}
