/**
 * swaggersocket: REST over WebSocket, both ways, for Deno and Bun.
 *
 * One WebSocket carries standard `Request`/`Response` exchanges in both
 * directions. An agent behind NAT dials a server with {@linkcode WebSocketClient};
 * the server ({@linkcode WebSocketServer}) can then call the agent's API over that
 * socket with `connection.fetch()`, and the agent can call the server's. Either end
 * serves any `(request) => Response` handler — a `Deno.serve` handler or Hono's
 * `app.fetch` works unchanged — and `connection.fetch` fits anywhere a `fetch` goes.
 *
 * @example Usage
 * ```ts ignore
 * import { EventType, WebSocketClient, WebSocketServer } from "@swaggersocket/swaggersocket";
 *
 * // The server: call each agent as it connects.
 * const server = new WebSocketServer({ hostname: "127.0.0.1", port: 8080 });
 * (async () => {
 *   for await (const event of server.events()) {
 *     if (event.type !== EventType.ConnectionReceived) continue;
 *     const response = await event.connection!.fetch("/hello");
 *     console.log(event.connection!.metadata, await response.text());
 *   }
 * })();
 *
 * // The agent: dial out, serve an API over the socket.
 * const client = new WebSocketClient({ url: "ws://127.0.0.1:8080" }).withMetadata({ name: "agent-7" });
 * const connection = await client.connect();
 * connection.serve(() => new Response("hello from the agent"));
 * ```
 *
 * @module
 */

export { WebSocketServer } from "./server.ts";
export type { AuthorizeContext, ServerAddr, WebSocketServerOptions } from "./server.ts";
export { WebSocketClient } from "./client.ts";
export type { WebSocketClientOptions } from "./client.ts";
export type { ReconnectOptions } from "./_backoff.ts";
export type { ConnectionOptions } from "./_options.ts";
export { Connection } from "./connection.ts";
export type {
  CloseOptions,
  ConnectionCloseInfo,
  FetchFunction,
  ForwardRequest,
} from "./connection.ts";
export type {
  BunServerLike,
  BunServerWebSocket,
  BunWebSocketHandlers,
  DenoServeHandlerInfo,
} from "./runtime/mod.ts";
export type { TlsOptions } from "./_tls.ts";
export type { Clock } from "./_clock.ts";
export type { SharedRedeemed, SharedResumeTokens } from "./_resume.ts";
export { ConnectionType, EventType } from "./types.ts";
export type {
  AddressRateLimits,
  ConnectionEvent,
  Handler,
  HandlerInfo,
  HeartbeatOptions,
  Limits,
  Logger,
  PingHandler,
  PongHandler,
  RateLimit,
} from "./types.ts";
export {
  ClientRefusedError,
  ConnectionClosedError,
  ExchangeRefusedError,
  ExchangeResetError,
  ExchangeTooLargeError,
  HandshakeError,
  ProtocolError,
} from "./errors.ts";
export { CloseCode, ResetCode } from "./protocol/close_codes.ts";
