/**
 * Types shared by the server, the client and connections.
 *
 * @module
 */

import type { Connection } from "./connection.ts";

export { ConnectionType } from "./connection.ts";
export type { Handler, HandlerInfo, PingHandler, PongHandler } from "./connection.ts";
export type { Logger } from "./_logger.ts";

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

/** Heartbeat timing. */
export interface HeartbeatOptions {
  /** Milliseconds between pings (± 20 % jitter). Default 10 000. */
  interval?: number;
  /** Milliseconds of silence after which the connection has failed. Default 30 000. */
  timeout?: number;
}

/** A rate: so many at once, refilled at so many per second (a token bucket). */
export interface RateLimit {
  /** How many at once. */
  burst?: number;
  /** How many per second, sustained. */
  perSecond?: number;
}

/**
 * Limits this end enforces; each is also announced to the peer where it matters. The
 * defaults are safe for a server facing the internet: raise them for trusted peers, there
 * is no need to lower them.
 */
export interface Limits {
  /** Largest frame payload accepted, bytes. Default 1 MiB; at least 16 KiB. */
  maxFrameBytes?: number;
  /**
   * Largest WebSocket message accepted, bytes; at least `maxFrameBytes` + 10. A larger one
   * closes the connection with 4010 before any of it is decoded (on a Bun server the
   * runtime itself refuses it, with 1009). Default 2 MiB.
   */
  maxMessageBytes?: number;
  /** Largest request or response head accepted, bytes. Default 64 KiB. */
  maxHeaderBytes?: number;
  /** Largest client metadata accepted (server), as compact JSON bytes. Default 16 KiB. */
  maxMetadataBytes?: number;
  /**
   * Most JSON values in client metadata (server): objects, arrays, strings, numbers,
   * literals and object keys, counted before parsing. Default 1024.
   */
  maxMetadataValues?: number;
  /** Exchanges the peer may have running towards this end at once. Default 1024; 256 on a server. */
  maxConcurrentStreams?: number;
  /**
   * Body bytes the peer may send per exchange before this end's reader catches up. Default 1 MiB;
   * 2 MiB on a server. The connection as a whole is bounded by `maxBufferedBytes`.
   */
  initialWindow?: number;
  /**
   * The connection's budget: the most bytes it holds on its peer's behalf, whatever the
   * peer sends — received body bytes not read yet (a quarter of this is the connection
   * window announced to the peer; each byte is charged at most twice, for what it keeps
   * alive), body bytes waiting to be sent (bodies are read from the application only while
   * less than an eighth of this waits, or their own exchange has less than 16 KiB waiting),
   * and replies and messages the socket has not
   * written. `connection.bufferedBytes` says where it stands. Default 32 MiB.
   */
  maxBufferedBytes?: number;
  /**
   * Milliseconds a reader may take nothing of a body whose waiting bytes hold the connection
   * while its receive window is spent (three quarters of it unread) before its exchange is
   * cut: the body errors with `ExchangeResetError` and what it held goes back to the peer.
   * A proxy that carries independent callers' exchanges over one connection turns this on,
   * so that a few readers that stop cannot stall the others (the gateway does). Default:
   * off, and a slow reader only slows its peer.
   *
   * @example A proxy's connection
   * ```ts
   * const limits = { stalledReaderTimeout: 5_000 };
   * ```
   */
  stalledReaderTimeout?: number;
  /** Milliseconds a new socket has to complete the handshake. Default 10 000. */
  handshakeTimeout?: number;
  /** Connections the server holds at once, handshaking or open (server); more get 4009. Default 10 000. */
  maxConnections?: number;
  /** Sockets the server lets handshake at once (server); more get 4009. Default 1024. */
  maxPendingHandshakes?: number;
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
  /** Pings the peer may send (the HTTP/2 ping flood); more close with 4008. Default 100 at once, 50 per second. */
  pingRateLimit?: RateLimit;
  /**
   * Rates per remote address, shared by every connection from it (server); `false` turns
   * them off (behind a proxy, where every peer has the proxy's address).
   */
  addressRateLimits?: false | AddressRateLimits;
}

/** Rates per remote address (see `Limits.addressRateLimits`). */
export interface AddressRateLimits {
  /** New sockets; more are closed with 4008 right after the upgrade. Default 128 at once, 32 per second. */
  handshakes?: RateLimit;
  /**
   * Resume tokens that did not redeem; past the rate, tokens from the address are not
   * looked at (the client gets a fresh id, as for any failed resume). Default 32 at once, 1 per second.
   */
  failedResumes?: RateLimit;
  /** Pings, all connections together; more close the pinging connection with 4008. Default 1000 at once, 500 per second. */
  pings?: RateLimit;
}
