/**
 * The errors of the protocol: a peer's violation ({@linkcode ProtocolError}) and the
 * refusals of `Session` commands that the layer above tells apart by class.
 *
 * @module
 */

import type { CloseCode } from "./close_codes.ts";

/**
 * A peer broke the protocol. The connection that saw it closes with {@linkcode ProtocolError.code};
 * no other connection is affected.
 *
 * @example Usage
 * ```ts
 * import { CloseCode, ProtocolError } from "@swaggersocket/swaggersocket/protocol";
 * const error = new ProtocolError("Cannot decode frame: truncated header", CloseCode.ProtocolError);
 * error.code; // 4000
 * ```
 */
export class ProtocolError extends Error {
  /** The WebSocket close code to close the socket with. */
  readonly code: CloseCode;

  /**
   * Creates the error.
   *
   * @param message What went wrong, in sentence case.
   * @param code The close code to use.
   * @param options The usual error options, such as `cause`.
   */
  constructor(message: string, code: CloseCode, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProtocolError";
    this.code = code;
  }
}

/**
 * `Session.openStream` refused: the peer's `maxConcurrentStreams` streams are already open.
 * A `RangeError`, as before it had a class of its own.
 *
 * @example Usage
 * ```ts
 * import { StreamLimitError } from "@swaggersocket/swaggersocket/protocol";
 * const error = new StreamLimitError(100);
 * error.limit; // 100
 * ```
 */
export class StreamLimitError extends RangeError {
  /** How many streams the peer allows at once. */
  readonly limit: number;

  /**
   * Creates the error.
   *
   * @param limit How many streams the peer allows at once.
   * @param options The usual error options.
   */
  constructor(limit: number, options?: ErrorOptions) {
    super(`Cannot open stream: peer allows ${limit} concurrent streams`, options);
    this.name = "StreamLimitError";
    this.limit = limit;
  }
}

/**
 * A request or response head is larger than the peer accepts (its `maxHeaderBytes`, or its
 * `maxFrameBytes`, since a head travels in one frame). A `RangeError`, as before it had a
 * class of its own.
 *
 * @example Usage
 * ```ts
 * import { HeaderSizeError } from "@swaggersocket/swaggersocket/protocol";
 * const error = new HeaderSizeError(70_000, 65_536);
 * error.message; // "Cannot send headers: 70000 bytes exceeds the peer's limit 65536"
 * ```
 */
export class HeaderSizeError extends RangeError {
  /** The encoded head's size in bytes. */
  readonly size: number;
  /** The most the peer accepts. */
  readonly limit: number;

  /**
   * Creates the error.
   *
   * @param size The encoded head's size in bytes.
   * @param limit The most the peer accepts.
   * @param options The usual error options.
   */
  constructor(size: number, limit: number, options?: ErrorOptions) {
    super(`Cannot send headers: ${size} bytes exceeds the peer's limit ${limit}`, options);
    this.name = "HeaderSizeError";
    this.size = size;
    this.limit = limit;
  }
}

/**
 * `Session.openStream` refused: a GOAWAY went one way or the other, so no new streams
 * open. A `TypeError` (the session is not open), as before it had a class of its own.
 *
 * @example Usage
 * ```ts
 * import { GoingAwayError } from "@swaggersocket/swaggersocket/protocol";
 * new GoingAwayError().message; // "Cannot open stream: session is draining"
 * ```
 */
export class GoingAwayError extends TypeError {
  /**
   * Creates the error.
   *
   * @param options The usual error options.
   */
  constructor(options?: ErrorOptions) {
    super("Cannot open stream: session is draining", options);
    this.name = "GoingAwayError";
  }
}
