/**
 * The error a peer's protocol violation becomes.
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
