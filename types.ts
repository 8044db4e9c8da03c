/**
 * Types shared by the server, the client and connections.
 *
 * @module
 */

import type { Connection } from "./connection.ts";

/** What kind of connection event happened. String values match the names. */
export const EventType = {
  /** A connection completed its handshake. */
  ConnectionReceived: "ConnectionReceived",
  /** A connection ended (always the last event of a connection). */
  ConnectionClosed: "ConnectionClosed",
  /** A connection failed: heartbeat silence, a protocol error, or a dropped socket. `ConnectionClosed` follows. */
  ConnectionFailure: "ConnectionFailure",
} as const;

/** A value of {@linkcode EventType}. */
export type EventType = typeof EventType[keyof typeof EventType];

/** Which end of the socket a connection is. */
export const ConnectionType = {
  /** The server's end: it accepted the socket. */
  ServerSide: "ServerSide",
  /** The client's end: it dialed. */
  ClientSide: "ClientSide",
} as const;

/** A value of {@linkcode ConnectionType}. */
export type ConnectionType = typeof ConnectionType[keyof typeof ConnectionType];

/** One event from `server.events()` or `client.events()`. */
export interface ConnectionEvent {
  /** What happened. */
  type: EventType;
  /** The connection's id (a ULID). */
  connectionId: string;
  /** The connection the event is about (absent only when a client gives up reconnecting). */
  connection?: Connection;
  /** Why, for `ConnectionFailure` and abnormal `ConnectionClosed` events. */
  error?: Error;
  /** For `ConnectionReceived`: whether the client resumed an earlier connection id. */
  resumed?: boolean;
}

/** Where log lines go. `console` fits; the default is quiet. */
export interface Logger {
  /** Chatty detail. */
  debug(...args: unknown[]): void;
  /** Normal events. */
  info(...args: unknown[]): void;
  /** Something unexpected that was handled. */
  warn(...args: unknown[]): void;
  /** Something failed. */
  error(...args: unknown[]): void;
}

/** What a handler gets besides the request. */
export interface HandlerInfo {
  /** The connection the request came over. */
  connection: Connection;
  /** The peer's address, shaped like `Deno.ServeHandlerInfo`'s. */
  remoteAddr: { transport: "tcp"; hostname: string; port: number };
  /**
   * Resolves when the exchange has ended: the response was sent in full, or the peer
   * cancelled, or the connection was lost. Never rejects. (`Deno.ServeHandlerInfo` has it too.)
   */
  readonly completed: Promise<void>;
}

/**
 * Serves requests that arrive over a connection. Any `Deno.serve` / `Bun.serve`
 * handler or Hono `app.fetch` fits.
 */
export type Handler = (
  request: Request,
  info: HandlerInfo,
) => Response | Promise<Response>;

/** Heartbeat timing. */
export interface HeartbeatOptions {
  /** Milliseconds between pings (± 20 % jitter). Default 10 000. */
  interval?: number;
  /** Milliseconds of silence after which the connection has failed. Default 30 000. */
  timeout?: number;
}

/** Limits this end enforces; each is also announced to the peer where it matters. */
export interface Limits {
  /** Largest frame payload accepted, bytes. Default 1 MiB; at least 16 KiB. */
  maxFrameBytes?: number;
  /** Largest request or response head accepted, bytes. Default 64 KiB. */
  maxHeaderBytes?: number;
  /** Largest client metadata accepted (server), as JSON bytes. Default 16 KiB. */
  maxMetadataBytes?: number;
  /** Exchanges the peer may have running towards this end at once. Default 1024. */
  maxConcurrentStreams?: number;
  /**
   * Body bytes the peer may send per exchange before this end's reader catches up. Default 1 MiB;
   * 2 MiB on a server. Unread bytes a peer can make this end hold: up to this × `maxConcurrentStreams`.
   */
  initialWindow?: number;
  /** Milliseconds a new socket has to complete the handshake. Default 10 000. */
  handshakeTimeout?: number;
  /** Connections the server holds at once (server). Default unlimited. */
  maxConnections?: number;
  /**
   * Stream resets and refusals the peer may cause (the HTTP/2 "Rapid Reset" defence,
   * CVE-2023-44487); a peer over the limit is closed with 4008. Default: a burst of
   * 2 × `maxConcurrentStreams` (at least 1000) at once, refilled at 500 per second.
   */
  resetRateLimit?: {
    /** Resets and refusals allowed at once. Default 2 × `maxConcurrentStreams`, at least 1000. */
    burst?: number;
    /** Resets and refusals allowed per second, sustained. Default 500. */
    perSecond?: number;
  };
}

/** The ping hook: gets the ping's data, may return the data the pong carries. */
export type PingHandler = (appData: string, connection: Connection) => string | void;

/** The pong hook: gets the pong's data and the measured round-trip time. */
export type PongHandler = (
  appData: string,
  rtt: number | undefined,
  connection: Connection,
) => void;
