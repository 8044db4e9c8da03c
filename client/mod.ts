/**
 * The client alone, for web pages and small bundles: a `WebSocketClient` that dials a
 * swaggersocket server (or the gateway), serves its requests with a handler and calls it
 * back, without the server, the resume store or `ulid` in the bundle. It needs only the
 * standard `WebSocket`, so it runs in browsers as well as in Deno and Bun.
 *
 * In a page, authenticate with a token in the metadata (checked by the server's `authorize`,
 * or the gateway's `--token`/`--credentials`): a browser cannot set `headers` or `caCerts`.
 *
 * @example A page that serves a small API to the server
 * ```ts ignore
 * import { WebSocketClient } from "@swaggersocket/swaggersocket/client";
 *
 * const client = new WebSocketClient({
 *   url: "wss://gateway.example/agents/connect",
 *   handler: (request) => Response.json({ title: document.title, path: new URL(request.url).pathname }),
 * }).withMetadata({ name: "kiosk-3", token: "…" });
 * const connection = await client.connect();
 * const answer = await connection.fetch("/hello");
 * ```
 *
 * @module
 */

export { WebSocketClient } from "../client.ts";
export type { WebSocketClientOptions } from "../client.ts";
export type { ReconnectOptions } from "../_backoff.ts";
export type { ConnectionOptions } from "../_options.ts";
export type { Clock } from "../_clock.ts";
export { Connection } from "../connection.ts";
export type {
  CloseOptions,
  ConnectionCloseInfo,
  FetchFunction,
  ForwardRequest,
} from "../connection.ts";
export { ConnectionType, EventType } from "../types.ts";
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
} from "../types.ts";
export {
  ConnectionClosedError,
  ExchangeRefusedError,
  ExchangeResetError,
  ExchangeTooLargeError,
  HandshakeError,
  ProtocolError,
} from "../errors.ts";
export { CloseCode, ResetCode } from "../protocol/close_codes.ts";
