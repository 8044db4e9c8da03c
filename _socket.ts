/**
 * The one socket shape everything above the runtime adapters talks to.
 *
 * Each runtime hands us a different WebSocket: the standard `WebSocket` (Deno's
 * `Deno.upgradeWebSocket`, and every client) or Bun's `ServerWebSocket`, whose
 * events arrive as callbacks on the server. An adapter turns each into a
 * {@linkcode Socket}; nothing above the adapters asks which runtime it runs on.
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

const noop = (): void => {};

/**
 * Adapts a standard `WebSocket` that is already open (or opening).
 *
 * @param ws The socket.
 * @returns The adapter.
 */
export function adaptWebSocket(ws: WebSocket): Socket {
  // Bun's client copies each binary message once more to make an ArrayBuffer; as a
  // "nodebuffer" it does not. Elsewhere that value is refused (Deno keeps the old one,
  // Node's undici falls back to "blob"), and "arraybuffer" it is.
  const typed = ws as { binaryType: string };
  typed.binaryType = "nodebuffer";
  if (typed.binaryType !== "nodebuffer") typed.binaryType = "arraybuffer";
  let closed = false;
  const socket: Socket = {
    send: (data) => ws.send(data),
    close: (code, reason) => {
      // Deno's server socket is still CONNECTING when upgradeWebSocket returns, and
      // there close() is silently ignored: close once it has opened instead.
      if (ws.readyState === WebSocket.CONNECTING) {
        ws.addEventListener("open", () => socket.close(code, reason), { once: true });
        return;
      }
      try {
        ws.close(code, reason);
      } catch {
        ws.close();
      }
    },
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    signalsDrain: false,
    onMessage: noop,
    onClose: noop,
    onDrain: noop,
  };
  ws.addEventListener("message", (event: MessageEvent) => {
    const data = event.data as string | ArrayBuffer | Uint8Array;
    socket.onMessage(
      typeof data === "string" ? data : data instanceof ArrayBuffer
        ? new Uint8Array(data)
        // A plain view of Bun's Buffer, not a copy: body chunks stay plain Uint8Arrays.
        : new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    );
  });
  ws.addEventListener("close", (event: CloseEvent) => {
    if (closed) return;
    closed = true;
    // Deno reports a dropped TCP connection as code 0; RFC 6455 calls that 1006.
    socket.onClose(event.code || 1006, event.reason);
  });
  return socket;
}

/** The part of Bun's `ServerWebSocket` we use, described structurally. */
export interface BunServerWebSocket {
  /** Sends; returns -1 when queued behind backpressure, 0 when dropped, else bytes sent. */
  send(data: Uint8Array | string, compress?: boolean): number;
  /** Closes the socket. */
  close(code?: number, reason?: string): void;
  /** Bytes buffered (Bun ≥ 1.1). */
  getBufferedAmount?(): number;
  /** Per-socket data given to `server.upgrade`. */
  data: unknown;
  /** The peer's IP address. */
  readonly remoteAddress: string;
}

/** A {@linkcode Socket} over Bun's `ServerWebSocket`; Bun's callbacks push into it. */
export interface BunSocket extends Socket {
  /** Feed Bun's `message` callback here. */
  dispatchMessage(data: string | Uint8Array): void;
  /** Feed Bun's `close` callback here. */
  dispatchClose(code: number, reason: string): void;
  /** Feed Bun's `drain` callback here. */
  dispatchDrain(): void;
}

/**
 * Adapts Bun's `ServerWebSocket`.
 *
 * @param ws Bun's socket, from the `open` callback.
 * @returns The adapter; wire Bun's `message`, `close` and `drain` callbacks to its `dispatch*`.
 */
export function adaptBunSocket(ws: BunServerWebSocket): BunSocket {
  let closed = false;
  let pending = 0;
  const socket: BunSocket = {
    send: (data) => {
      // -1: accepted but queued behind backpressure; `drain` follows.
      if (ws.send(data) === -1) pending += data.byteLength;
    },
    close: (code, reason) => ws.close(code, reason),
    get bufferedAmount() {
      return ws.getBufferedAmount?.() ?? pending;
    },
    signalsDrain: true,
    onMessage: noop,
    onClose: noop,
    onDrain: noop,
    dispatchMessage: (data) => socket.onMessage(data),
    dispatchClose: (code, reason) => {
      if (closed) return;
      closed = true;
      socket.onClose(code, reason);
    },
    dispatchDrain: () => {
      pending = 0;
      socket.onDrain();
    },
  };
  return socket;
}
