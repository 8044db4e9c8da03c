/**
 * The one socket shape everything above the runtime adapters talks to.
 *
 * Each runtime hands us a different WebSocket: the standard `WebSocket` (Deno's
 * `Deno.upgradeWebSocket`, and every client) or Bun's `ServerWebSocket`, whose
 * events arrive as callbacks on the server. An adapter turns each into a
 * {@linkcode Socket}; nothing above the adapters asks which runtime it runs on. The same
 * goes for opening a client socket with headers and extra CA certificates
 * ({@linkcode openWebSocket}).
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

/**
 * Whether this runtime's `WebSocket` client makes a message of 1–64 KiB wait ~40 ms for the
 * peer's delayed ACK. Deno's leaves Nagle on and writes such a message as header, then
 * payload; a client session there cuts its output into messages of at most 1 KiB
 * (`splitMessages`, PROTOCOL.md §9). Bun's client sets TCP_NODELAY and writes whole messages.
 */
export const CLIENT_DELAYS_MID_SIZE_MESSAGES: boolean =
  typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";

const noop = (): void => {};

/** Bun's messages up to this size are copied rather than viewed (see `plainBytes`). */
const COPY_MESSAGES_UP_TO = 4096;

/**
 * A message as a plain `Uint8Array` that owns its buffer, not Bun's `Buffer`: a Buffer's
 * `slice()` is a view, not a copy, so a chunk "copied" out of a Buffer message would keep the
 * whole message alive (2 GiB held against 8 MiB counted, in the pinning attack), and body
 * chunks should look the same to handlers on every runtime. Bun's `.buffer` costs 1.5 µs
 * (it makes the ArrayBuffer); copying a small message costs less (0.3 µs for 100 B, the
 * same at 4 KiB), a view of a large one far less (16 µs against 184 for 1 MiB).
 */
export function plainBytes(data: Uint8Array): Uint8Array {
  return data.byteLength <= COPY_MESSAGES_UP_TO
    ? new Uint8Array(data)
    : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

// The adapters are classes, not object literals full of closures: a server holds one per
// connection, and most connections are idle (on V8 a literal with a getter also ends up
// as a slow dictionary object).

/** A {@linkcode Socket} over a standard `WebSocket`; it is its own event listener. */
class StandardSocket implements Socket {
  readonly signalsDrain = false;
  onMessage: (data: Uint8Array | string) => void = noop;
  onClose: (code: number, reason: string) => void = noop;
  onDrain: () => void = noop;
  readonly #ws: WebSocket;
  #closed = false;

  constructor(ws: WebSocket) {
    this.#ws = ws;
    // Bun's client copies each binary message once more to make an ArrayBuffer; as a
    // "nodebuffer" it does not. Elsewhere that value is refused (Deno keeps the old one,
    // Node's undici falls back to "blob"), and "arraybuffer" it is.
    const typed = ws as { binaryType: string };
    typed.binaryType = "nodebuffer";
    if (typed.binaryType !== "nodebuffer") typed.binaryType = "arraybuffer";
    ws.addEventListener("message", this);
    ws.addEventListener("close", this);
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  send(data: Uint8Array): void {
    this.#ws.send(data);
  }

  close(code: number, reason: string): void {
    const ws = this.#ws;
    // Deno's server socket is still CONNECTING when upgradeWebSocket returns, and
    // there close() is silently ignored: close once it has opened instead.
    if (ws.readyState === WebSocket.CONNECTING) {
      ws.addEventListener("open", () => this.close(code, reason), { once: true });
      return;
    }
    try {
      ws.close(code, reason);
    } catch {
      ws.close();
    }
  }

  handleEvent(event: Event): void {
    if (event.type === "message") {
      const data = (event as MessageEvent).data as string | ArrayBuffer | Uint8Array;
      this.onMessage(
        typeof data === "string"
          ? data
          : data instanceof ArrayBuffer
          ? new Uint8Array(data)
          : plainBytes(data),
      );
      return;
    }
    if (this.#closed) return;
    this.#closed = true;
    const { code, reason } = event as CloseEvent;
    // Deno reports a dropped TCP connection as code 0; RFC 6455 calls that 1006.
    this.onClose(code || 1006, reason);
  }
}

/**
 * Adapts a standard `WebSocket` that is already open (or opening).
 *
 * @param ws The socket.
 * @returns The adapter.
 */
export function adaptWebSocket(ws: WebSocket): Socket {
  return new StandardSocket(ws);
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

class BunSocketAdapter implements BunSocket {
  readonly signalsDrain = true;
  onMessage: (data: Uint8Array | string) => void = noop;
  onClose: (code: number, reason: string) => void = noop;
  onDrain: () => void = noop;
  readonly #ws: BunServerWebSocket;
  #closed = false;
  #pending = 0;

  constructor(ws: BunServerWebSocket) {
    this.#ws = ws;
  }

  get bufferedAmount(): number {
    return this.#ws.getBufferedAmount?.() ?? this.#pending;
  }

  send(data: Uint8Array): void {
    // -1: accepted but queued behind backpressure; `drain` follows.
    if (this.#ws.send(data) === -1) this.#pending += data.byteLength;
  }

  close(code: number, reason: string): void {
    this.#ws.close(code, reason);
  }

  dispatchMessage(data: string | Uint8Array): void {
    this.onMessage(typeof data === "string" ? data : plainBytes(data));
  }

  dispatchClose(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.onClose(code, reason);
  }

  dispatchDrain(): void {
    this.#pending = 0;
    this.onDrain();
  }
}

/**
 * Adapts Bun's `ServerWebSocket`.
 *
 * @param ws Bun's socket, from the `open` callback.
 * @returns The adapter; wire Bun's `message`, `close` and `drain` callbacks to its `dispatch*`.
 */
export function adaptBunSocket(ws: BunServerWebSocket): BunSocket {
  return new BunSocketAdapter(ws);
}

/** What {@linkcode openWebSocket} needs besides the URL. */
export interface OpenWebSocketOptions {
  /** Headers for the upgrade request (Deno and Bun). */
  headers?: HeadersInit;
  /** PEM certificates trusted for `wss:`, besides the runtime's default roots. */
  caCerts?: string[];
}

interface WebSocketWithOptions {
  new (url: string | URL, options?: Record<string, unknown>): WebSocket;
}

interface TlsGlobals {
  Bun?: unknown;
  Deno?: { createHttpClient?(options: { caCerts: string[] }): { close(): void } };
  process?: { getBuiltinModule?(name: string): unknown };
}

let bunDefaultRoots: readonly string[] | undefined;

/**
 * Opens a client `WebSocket`: the one place that knows how each runtime takes the upgrade's
 * headers and extra CA certificates.
 *
 * - Deno: `new WebSocket(url, { headers, client })`, the `client` from
 *   `Deno.createHttpClient({ caCerts })`, which adds them to the default roots. It is closed
 *   once the socket has opened or failed: only the TLS handshake needs it.
 * - Bun: `new WebSocket(url, { headers, tls: { ca } })`. Bun's `ca` replaces the default
 *   roots, so `node:tls`'s `rootCertificates` go in too and both runtimes mean the same.
 * - Elsewhere, `caCerts` throws a `TypeError` (headers are passed on, as ever).
 *
 * @param url The `ws:`, `wss:`, `http:` or `https:` URL.
 * @param options Upgrade headers and extra CA certificates.
 * @returns The socket, connecting.
 * @throws {TypeError} From the constructor, or if `caCerts` cannot be honoured here.
 */
export function openWebSocket(url: string | URL, options: OpenWebSocketOptions = {}): WebSocket {
  const { headers, caCerts } = options;
  const trust = caCerts !== undefined && caCerts.length > 0;
  if (headers === undefined && !trust) return new WebSocket(url);
  const init: Record<string, unknown> = headers === undefined ? {} : { headers };
  const g = globalThis as TlsGlobals;
  let client: { close(): void } | undefined;
  if (trust && g.Bun !== undefined) {
    if (bunDefaultRoots === undefined) {
      const tls = g.process?.getBuiltinModule?.("node:tls") as
        | { rootCertificates?: readonly string[] }
        | undefined;
      bunDefaultRoots = tls?.rootCertificates ?? [];
    }
    init.tls = { ca: [...bunDefaultRoots, ...caCerts] };
  } else if (trust && typeof g.Deno?.createHttpClient === "function") {
    client = g.Deno.createHttpClient({ caCerts });
    init.client = client;
  } else if (trust) {
    throw new TypeError("Cannot trust caCerts here: only Deno's and Bun's WebSocket take them");
  }
  let ws: WebSocket;
  try {
    ws = new (WebSocket as unknown as WebSocketWithOptions)(url, init);
  } catch (error) {
    client?.close();
    throw error;
  }
  if (client) {
    const used = client;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      try {
        used.close();
      } catch {
        // Already closed.
      }
    };
    ws.addEventListener("open", release, { once: true });
    ws.addEventListener("close", release, { once: true });
  }
  return ws;
}
