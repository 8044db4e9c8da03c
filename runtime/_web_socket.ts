/**
 * The standard `WebSocket`: the adapter to the {@linkcode Socket} contract (every client,
 * and Deno's server sockets from `Deno.upgradeWebSocket`), and opening a client socket.
 *
 * @module
 */

import { type Socket, SocketEvents } from "../_socket.ts";
import { plainBytes } from "./_plain_bytes.ts";
import type { DialTls } from "./_types.ts";

// The adapters are classes, not object literals full of closures: a server holds one per
// connection, and most connections are idle (on V8 a literal with a getter also ends up
// as a slow dictionary object).

/** A {@linkcode Socket} over a standard `WebSocket`; it is its own event listener. */
class StandardSocket extends SocketEvents implements Socket {
  readonly signalsDrain = false;
  readonly #ws: WebSocket;
  readonly #onClose: (() => void) | undefined;

  constructor(ws: WebSocket, binaryType: BinaryType, onClose: (() => void) | undefined) {
    super();
    this.#ws = ws;
    this.#onClose = onClose;
    (ws as { binaryType: string }).binaryType = binaryType;
    ws.addEventListener("message", this);
    ws.addEventListener("close", this);
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  send(data: Uint8Array): void {
    // A socket that has begun closing takes nothing more; browsers log an error for each try.
    if (this.#ws.readyState > WebSocket.OPEN) return;
    // The library's bytes never live in a SharedArrayBuffer; the DOM's types ask to be told.
    this.#ws.send(data as Uint8Array<ArrayBuffer>);
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
      this.deliverMessage(
        typeof data === "string"
          ? data
          : data instanceof ArrayBuffer
          ? new Uint8Array(data)
          : plainBytes(data),
      );
      return;
    }
    this.#onClose?.();
    const { code, reason } = event as CloseEvent;
    // Deno reports a dropped TCP connection as code 0; RFC 6455 calls that 1006.
    this.deliverClose(code || 1006, reason);
  }
}

/**
 * How a runtime's `WebSocket` should hand over binary messages: Bun's client copies each one
 * once more to make an `ArrayBuffer`, and as a `"nodebuffer"` it does not; everywhere else
 * (Deno, browsers, which log a warning for a value they do not know) `"arraybuffer"`.
 */
export type BinaryType = "nodebuffer" | "arraybuffer";

/**
 * Adapts a standard `WebSocket` that is already open (or opening).
 *
 * @param ws The socket.
 * @param binaryType How it hands over binary messages (see {@linkcode BinaryType}).
 * @param onClose Told when the socket has closed, before the connection hears of it: one
 *   listener on the socket rather than two.
 * @returns The adapter.
 */
export function adaptWebSocket(
  ws: WebSocket,
  binaryType: BinaryType = "arraybuffer",
  onClose?: () => void,
): Socket {
  return new StandardSocket(ws, binaryType, onClose);
}

interface WebSocketWithOptions {
  new (url: string | URL, options?: Record<string, unknown>): WebSocket;
}

/**
 * Opens a client `WebSocket` with the options object Deno's and Bun's constructors take
 * besides the standard protocols argument (`{ headers, … }`).
 *
 * @param url The `ws:`, `wss:`, `http:` or `https:` URL.
 * @param headers Headers for the upgrade request.
 * @param tls The runtime's fields to trust extra CAs, if any.
 * @returns The socket, connecting.
 * @throws {TypeError} From the constructor.
 */
export function openWebSocketWith(
  url: string | URL,
  headers: HeadersInit | undefined,
  tls: DialTls | undefined,
): WebSocket {
  const init: Record<string, unknown> = { ...(headers === undefined ? {} : { headers }) };
  if (tls) Object.assign(init, tls.init);
  let ws: WebSocket;
  try {
    ws = new (WebSocket as unknown as WebSocketWithOptions)(url, init);
  } catch (error) {
    tls?.release?.();
    throw error;
  }
  const free = tls?.release;
  if (free) {
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      try {
        free();
      } catch {
        // Already closed.
      }
    };
    ws.addEventListener("open", release, { once: true });
    ws.addEventListener("close", release, { once: true });
  }
  return ws;
}

/** Why a client `WebSocket` failed to open, as the runtime said it. */
export interface DialFailure {
  /** The runtime's reason, without the URL it repeats; `""` if it gave none. */
  detail: string;
  /**
   * Whether the server's certificate comes from an issuer the runtime does not trust (not a
   * wrong name or an expired certificate, which a CA would not fix).
   */
  untrustedIssuer: boolean;
  /**
   * Whether the reason is that of a retry, the first attempt's lost: Deno's client dials a
   * `wss://` URL again over HTTP/2 when the first attempt fails, and reports only the retry's
   * failure, "NoApplicationProtocol" from a server that speaks no HTTP/2 (a `node:https`
   * one, such as the gateway's), whatever sank the first (often a certificate it does not
   * trust).
   */
  firstAttemptHidden: boolean;
}

/**
 * Reads the runtime's reason for a failed dial from the `error` event's message (the `close`
 * event that follows says only 1006). Bun: "WebSocket connection to '<url>' failed: …";
 * Deno: "NetworkError: failed to connect to WebSocket: …". An untrusted issuer is, on Deno,
 * "UnknownIssuer"; on Bun, "unable to verify the first certificate", "self signed certificate
 * (in certificate chain)", "unable to get local issuer …". Deno's "NoApplicationProtocol" hides
 * the first attempt's reason (see {@linkcode DialFailure.firstAttemptHidden}).
 *
 * @param message The error event's message.
 * @returns The reason, and whether the issuer was not trusted.
 */
export function dialFailure(message: string): DialFailure {
  const detail = message
    .replace(/^WebSocket connection to '[^']*' failed: /, "")
    .replace(/^NetworkError: failed to connect to WebSocket: /, "");
  const untrustedIssuer = /UnknownIssuer|unable to verify|self[- ]signed|unable to get .*issuer/i
    .test(detail);
  return { detail, untrustedIssuer, firstAttemptHidden: /NoApplicationProtocol/.test(detail) };
}
