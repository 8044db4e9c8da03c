/**
 * Errors a caller can `instanceof`. Cancellation uses the standard `DOMException`
 * names (`AbortError`, `TimeoutError`); misuse throws `TypeError` or `RangeError`.
 * Each error says whether repeating the same call may succeed (`retryable`).
 *
 * @module
 */

import { TERMINAL_CLOSE_CODES } from "./protocol/close_codes.ts";

export { ProtocolError } from "./protocol/errors.ts";

/**
 * The connection closed or was lost; every pending `fetch` rejects with this, at once.
 *
 * @example Usage
 * ```ts ignore
 * import { ConnectionClosedError } from "@swaggersocket/swaggersocket";
 * try {
 *   await connection.fetch("/slow");
 * } catch (error) {
 *   if (error instanceof ConnectionClosedError) console.log("lost:", error.code);
 * }
 * ```
 */
export class ConnectionClosedError extends Error {
  /** The WebSocket close code (1006 when the socket dropped without a close frame). */
  readonly code: number;
  /** Whether retrying on a new connection may succeed. Always `true`. */
  readonly retryable: boolean = true;

  /**
   * Creates the error.
   *
   * @param message What happened.
   * @param code The close code.
   * @param options The usual error options, such as `cause`.
   */
  constructor(message: string, code: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConnectionClosedError";
    this.code = code;
  }
}

/**
 * `WebSocketClient.connect()` failed: the server could not be reached, refused the
 * client, or did not complete the handshake.
 *
 * @example Usage
 * ```ts ignore
 * import { HandshakeError, WebSocketClient } from "@swaggersocket/swaggersocket";
 * try {
 *   await new WebSocketClient({ url: "ws://127.0.0.1:8080" }).connect();
 * } catch (error) {
 *   if (error instanceof HandshakeError && !error.retryable) console.error("refused:", error.message);
 * }
 * ```
 */
export class HandshakeError extends Error {
  /** The close code (see PROTOCOL.md), or 1006 when no connection was made. */
  readonly code: number;
  /** Whether trying again later may succeed (`false` for refusals and version mismatches). */
  readonly retryable: boolean;

  /**
   * Creates the error.
   *
   * @param message What happened.
   * @param code The close code.
   * @param retryable Whether trying again later may succeed.
   * @param options The usual error options, such as `cause`.
   */
  constructor(message: string, code: number, retryable: boolean, options?: ErrorOptions) {
    super(message, options);
    this.name = "HandshakeError";
    this.code = code;
    this.retryable = retryable;
  }
}

/**
 * Thrown by a server's `authorize` hook to refuse a client with a specific close code
 * instead of the default 4003 `Unauthorized`. The client's `connect()` then rejects with a
 * `HandshakeError` carrying that code, retryable unless the code is terminal (see
 * `TERMINAL_CLOSE_CODES`): a terminal code stops the client for good, any other makes it
 * retry with backoff.
 *
 * @example Usage
 * ```ts ignore
 * import { ClientRefusedError, CloseCode, WebSocketServer } from "@swaggersocket/swaggersocket";
 *
 * const server = new WebSocketServer({
 *   authorize: ({ metadata }) => {
 *     const name = (metadata as { name?: unknown } | null)?.name;
 *     if (typeof name !== "string") throw new ClientRefusedError(CloseCode.InvalidMetadata, "No name");
 *     if (busy.has(name)) throw new ClientRefusedError(CloseCode.NameInUse, "Name in use");
 *     return true;
 *   },
 * });
 * ```
 */
export class ClientRefusedError extends Error {
  /** The close code sent to the client: 4000–4999. */
  readonly code: number;
  /** The close reason sent to the client (cut to 123 UTF-8 bytes when sent). */
  readonly reason: string;
  /** Whether the refused client will try again by itself: `false` for the terminal codes. */
  readonly retryable: boolean;

  /**
   * Creates the error.
   *
   * @param code The close code: an application code, 4000–4999, such as `CloseCode.NameInUse`.
   * @param reason Why, for people; the client sees it.
   * @param options The usual error options, such as `cause`.
   * @throws {RangeError} If `code` is not an integer from 4000 to 4999.
   */
  constructor(code: number, reason: string, options?: ErrorOptions) {
    if (!Number.isInteger(code) || code < 4000 || code > 4999) {
      throw new RangeError(`Invalid close code: ${code} must be an integer from 4000 to 4999`);
    }
    super(`Refused: ${code}${reason ? ` ${reason}` : ""}`, options);
    this.name = "ClientRefusedError";
    this.code = code;
    this.reason = reason;
    this.retryable = !TERMINAL_CLOSE_CODES.has(code);
  }
}

/**
 * The peer refused the exchange before processing it (too many concurrent exchanges,
 * or it is going away). Nothing was processed, so it is safe to retry.
 *
 * @example Usage
 * ```ts ignore
 * import { ExchangeRefusedError } from "@swaggersocket/swaggersocket";
 * try {
 *   await connection.fetch("/pets");
 * } catch (error) {
 *   if (error instanceof ExchangeRefusedError) console.log("busy, retry later");
 * }
 * ```
 */
export class ExchangeRefusedError extends Error {
  /** Always `true`: the peer did not process the request. */
  readonly retryable: boolean = true;

  /**
   * Creates the error.
   *
   * @param message What happened.
   * @param options The usual error options, such as `cause`.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ExchangeRefusedError";
  }
}

/**
 * The exchange exceeded a limit (such as `maxHeaderBytes`). Sending it again would fail
 * the same way, so do not retry; the connection stays up.
 *
 * @example Usage
 * ```ts ignore
 * import { ExchangeTooLargeError } from "@swaggersocket/swaggersocket";
 * try {
 *   await connection.fetch("/pets", { headers: { "x-big": "x".repeat(100_000) } });
 * } catch (error) {
 *   if (error instanceof ExchangeTooLargeError) console.log(error.retryable); // false
 * }
 * ```
 */
export class ExchangeTooLargeError extends Error {
  /** Always `false`. */
  readonly retryable: boolean = false;

  /**
   * Creates the error.
   *
   * @param message What happened.
   * @param options The usual error options, such as `cause`.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ExchangeTooLargeError";
  }
}

/**
 * The peer ended the exchange early (its handler failed mid-body, or it cancelled).
 * A response body being read errors with this instead of ending, so a truncated body
 * never looks complete.
 *
 * @example Usage
 * ```ts ignore
 * import { ExchangeResetError } from "@swaggersocket/swaggersocket";
 * const response = await connection.fetch("/stream");
 * try {
 *   await response.text();
 * } catch (error) {
 *   if (error instanceof ExchangeResetError) console.log("cut off:", error.resetCode);
 * }
 * ```
 */
export class ExchangeResetError extends Error {
  /** The reset code (see PROTOCOL.md). */
  readonly resetCode: number;
  /** Always `false`: the peer may have acted on the request (refusals are {@linkcode ExchangeRefusedError}). */
  readonly retryable: boolean = false;

  /**
   * Creates the error.
   *
   * @param message What happened.
   * @param resetCode The reset code.
   * @param options The usual error options, such as `cause`.
   */
  constructor(message: string, resetCode: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "ExchangeResetError";
    this.resetCode = resetCode;
  }
}
