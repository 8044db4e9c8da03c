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
 * Each flag may come from the environment (`SWAGGERSOCKET_AGENT_URL`, `…_NAME`, `…_TOKEN`,
 * `…_UPSTREAM`, `…_CA`, …; `--help` lists them all); flags are checked strictly (an unknown
 * flag, a missing value or a URL of the wrong kind is one line naming it, exit code 2). It logs
 * one line per event on standard output (`--log-format pretty|json`, `--log-level`): each
 * failed connect with its cause and the next delay (say, a certificate it does not trust),
 * `connected` (its id), `disconnected` (the close code and reason), each `request` (unless
 * `--quiet`), and `refused by the gateway` before exiting with status 1.
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

export { type Agent, type AgentOptions, startAgent } from "./agent/_start_agent.ts";
export { demoHandler } from "./agent/_demo_api.ts";
export { tunnelHandler, type TunnelOptions } from "./agent/_tunnel.ts";

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

if (import.meta.main) {
  // The command line lives in cli/agent.ts; a library import does not load it.
  import("./cli/agent.ts").then(({ runAgent }) => runAgent());
}
