/**
 * WebSocket close codes and stream reset codes used by the protocol.
 *
 * Close codes sit in the application range 4000–4999 (RFC 6455 §7.4.2); the
 * standard 1000 is used for an orderly close. PROTOCOL.md lists each code with
 * the typed error a caller sees.
 *
 * @module
 */

/** WebSocket close codes sent by either end. */
export const CloseCode = {
  /** Orderly close by either end (RFC 6455). */
  Normal: 1000,
  /** A frame could not be decoded or broke the protocol's rules. */
  ProtocolError: 4000,
  /** The client speaks a protocol version the server does not. */
  UnsupportedVersion: 4001,
  /** The handshake did not complete within the handshake timeout. */
  HandshakeTimeout: 4002,
  /** The server's `authorize` hook refused the client. */
  Unauthorized: 4003,
  /** The handshake metadata is not valid JSON or exceeds the limit. */
  InvalidMetadata: 4004,
  /** No frame arrived within the heartbeat timeout. */
  HeartbeatTimeout: 4005,
  /** The server is shutting down; reconnect later. */
  GoingAway: 4006,
  /** The peer sent more body bytes than its flow-control window allowed. */
  FlowControlError: 4007,
  /**
   * The peer went over a rate limit: stream resets and refusals (Rapid Reset), pings, or
   * handshakes from its address.
   */
  RateLimited: 4008,
  /** The server has reached its connection limit. */
  TooManyConnections: 4009,
  /** A frame exceeded the receiver's `maxFrameBytes`, or a message its `maxMessageBytes`. */
  FrameTooLarge: 4010,
  /** The upgrade request came from an origin that is not allowed. */
  OriginNotAllowed: 4011,
  /** The connection id was resumed by another socket. */
  Replaced: 4012,
  /**
   * The peer does not read what it makes this end send: its unread replies (PONG,
   * WINDOW_UPDATE, RESET) went over the cap. Named after HTTP/2's ENHANCE_YOUR_CALM.
   */
  EnhanceYourCalm: 4013,
  /**
   * The identity the client claims (the gateway: its agent name) is held by another open
   * connection. Not terminal: the holder may be a half-open connection that the heartbeat is
   * about to end, so the client retries with backoff.
   */
  NameInUse: 4014,
  /**
   * A newer connection presenting the same identity and credentials took this one's place
   * (the gateway: the same agent restarted or reconnected). Terminal: reconnecting would take
   * the place back, and two processes sharing one credential would displace each other forever.
   */
  Superseded: 4015,
} as const;

/** A close code from {@linkcode CloseCode}. */
export type CloseCode = typeof CloseCode[keyof typeof CloseCode];

/** Close codes after which a client must not reconnect on its own. */
export const TERMINAL_CLOSE_CODES: ReadonlySet<number> = new Set([
  CloseCode.UnsupportedVersion,
  CloseCode.Unauthorized,
  CloseCode.InvalidMetadata,
  CloseCode.OriginNotAllowed,
  CloseCode.Superseded,
]);

/** Codes carried by a RESET frame: why one exchange ended early. */
export const ResetCode = {
  /** The requester gave up (an aborted `fetch`) or the responder stopped. */
  Cancel: 1,
  /** The receiver refused the stream: too many concurrent streams or going away. Safe to retry. */
  Refused: 2,
  /** The exchange exceeded a limit (for example `maxHeaderBytes`). Do not retry. */
  TooLarge: 3,
  /** The responder failed before it could answer. */
  Internal: 4,
  /** The stream broke a protocol rule that does not warrant closing the socket. */
  StreamError: 5,
} as const;

/** A reset code from {@linkcode ResetCode}. */
export type ResetCode = typeof ResetCode[keyof typeof ResetCode];

/** Close reasons must fit a WebSocket close frame: 123 bytes of UTF-8. */
export const MAX_CLOSE_REASON_BYTES = 123;

/**
 * Cuts a close reason to at most 123 UTF-8 bytes without splitting a character.
 *
 * @example Usage
 * ```ts
 * import { fitCloseReason } from "@swaggersocket/swaggersocket/protocol";
 * fitCloseReason("short"); // "short"
 * ```
 *
 * @param reason The reason text.
 * @returns The reason, cut to fit.
 */
export function fitCloseReason(reason: string): string {
  const encoder = new TextEncoder();
  if (encoder.encode(reason).byteLength <= MAX_CLOSE_REASON_BYTES) return reason;
  let out = "";
  let bytes = 0;
  for (const ch of reason) {
    const n = encoder.encode(ch).byteLength;
    if (bytes + n > MAX_CLOSE_REASON_BYTES) break;
    out += ch;
    bytes += n;
  }
  return out;
}
