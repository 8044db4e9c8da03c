/**
 * The one socket shape everything above the runtime adapters talks to.
 *
 * Each runtime hands us a different WebSocket: the standard `WebSocket` (Deno's
 * `Deno.upgradeWebSocket`, and every client), Bun's `ServerWebSocket`, whose events arrive
 * as callbacks on the server, or the `ws` package's (the gateway's). An adapter in
 * `runtime/` turns each into a {@linkcode Socket}; nothing above the adapters asks which
 * runtime it runs on.
 *
 * @module
 */

/** What a connection needs from a WebSocket. */
export interface Socket {
  /**
   * Sends one binary message. The bytes are copied before this returns (Deno's `WebSocket`,
   * Bun's client and `ServerWebSocket` all do), so the caller may reuse the buffer at once.
   */
  send(data: Uint8Array): void;
  /** Closes with a code and a reason (at most 123 UTF-8 bytes). */
  close(code: number, reason: string): void;
  /** Bytes accepted by `send` and not yet written to the network. */
  readonly bufferedAmount: number;
  /** Whether `onDrain` fires when the buffer empties; if not, the caller polls `bufferedAmount`. */
  readonly signalsDrain: boolean;
  /** Called with each message: bytes for binary messages, a string for text ones. */
  onMessage: (data: Uint8Array | string) => void;
  /** Called once when the socket has closed, for whatever reason. */
  onClose: (code: number, reason: string) => void;
  /** Called when a full send buffer has drained (only if `signalsDrain`). */
  onDrain: () => void;
}
