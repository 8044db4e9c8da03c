/**
 * Bun: its server's sockets (`ServerWebSocket`, whose events arrive as callbacks on the
 * server: they push into the adapter, as capnweb's `dispatchMessage` does), `Bun.serve`,
 * `server.upgrade`, its client's extra CAs (`tls.ca`), its TCP sockets (`Bun.connect`) and
 * its script facilities, all described structurally (no Bun type declarations needed).
 *
 * @module
 */

import { type Socket, SocketEvents } from "../_socket.ts";
import { plainBytes } from "./_plain_bytes.ts";
import { isAscii, latin1Bytes } from "./_latin1.ts";
import { Unsent } from "./_unsent.ts";
import type {
  DialTls,
  Listening,
  ListenOptions,
  RemoteAddr,
  ScriptRuntime,
  SocketAcceptor,
  TcpConnection,
  TcpHandlers,
} from "./_types.ts";

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

/** The part of Bun's `Server` used here, described structurally. */
export interface BunServerLike {
  /** Upgrades the request; returns whether it did. */
  upgrade(request: Request, options?: { data?: unknown; headers?: HeadersInit }): boolean;
  /** The client's address. */
  requestIP?(request: Request): { address: string; port: number } | null;
}

/** Bun's `websocket` handlers for `Bun.serve`, described structurally. */
export interface BunWebSocketHandlers {
  /** A socket opened. */
  open(ws: BunServerWebSocket): void;
  /** A message arrived. */
  message(ws: BunServerWebSocket, message: string | Uint8Array): void;
  /** A socket closed. */
  close(ws: BunServerWebSocket, code: number, reason: string): void;
  /** A full send buffer drained. */
  drain(ws: BunServerWebSocket): void;
  /** Largest message Bun accepts: the server's `limits.maxMessageBytes`. */
  maxPayloadLength: number;
}

/** The part of the `Bun` global used here. */
export interface BunGlobal {
  serve(options: {
    hostname?: string;
    port?: number;
    tls?: { cert: string; key: string };
    fetch: (
      request: Request,
      server: BunServerLike,
    ) => Response | undefined | Promise<Response | undefined>;
    websocket: BunWebSocketHandlers;
  }): {
    hostname: string;
    port: number;
    stop(closeActiveConnections?: boolean): Promise<void> | void;
  };
  connect(options: {
    hostname: string;
    port: number;
    data: BunTcp;
    socket: BunTcpHandlers;
  }): Promise<unknown>;
  argv: string[];
  env: Record<string, string | undefined>;
  file(path: string): { text(): Promise<string> };
  stdin: { text(): Promise<string> };
}

/** The part of Node's `process` global (which Bun has) used here. */
export interface ProcessGlobal {
  on(signal: string, listener: () => void): void;
  exit(code: number): never;
  getBuiltinModule?(name: string): unknown;
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

// A class, not an object literal full of closures: a server holds one per connection.
class BunSocketAdapter extends SocketEvents implements BunSocket {
  readonly signalsDrain = true;
  readonly #ws: BunServerWebSocket;
  #pending = 0;

  constructor(ws: BunServerWebSocket) {
    super();
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
    this.deliverMessage(typeof data === "string" ? data : plainBytes(data));
  }

  dispatchClose(code: number, reason: string): void {
    this.deliverClose(code, reason);
  }

  dispatchDrain(): void {
    this.#pending = 0;
    this.deliverDrain();
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

interface BunSocketData {
  /** Set by `upgradeOnBunServer()`, taken by `open`: Bun keeps `data` as long as the socket. */
  swaggersocket?: { request: Request; remoteAddr: RemoteAddr };
  socket?: BunSocket;
}

/**
 * Whether a server's per-request context is Bun's server (with nothing to guess: the user
 * hands it over when mounting).
 *
 * @param context What the app passed to `upgrade()`.
 * @returns `true` for Bun's server.
 */
export function isBunServer(context: unknown): context is BunServerLike {
  return typeof context === "object" && context !== null &&
    typeof (context as BunServerLike).upgrade === "function";
}

/**
 * Upgrades with Bun's `server.upgrade`; the socket reaches the server in the `open` callback
 * of {@linkcode bunWebSocketHandlers}.
 *
 * @param server Bun's server.
 * @param request The upgrade request.
 * @returns `undefined` once upgraded, else a 400.
 */
export function upgradeOnBunServer(server: BunServerLike, request: Request): Response | undefined {
  const ip = server.requestIP?.(request);
  const data: BunSocketData = {
    swaggersocket: {
      request,
      remoteAddr: { hostname: ip?.address ?? "", port: ip?.port ?? 0 },
    },
  };
  if (server.upgrade(request, { data })) return undefined;
  return new Response("WebSocket upgrade failed", { status: 400 });
}

/**
 * The `websocket` handlers for `Bun.serve` that hand each socket to `acceptor`.
 *
 * @param acceptor Who takes the sockets.
 * @param maxPayloadLength The largest message Bun accepts: Bun refuses a larger one itself
 *   (1009) before buffering it whole.
 * @returns The handlers.
 */
export function bunWebSocketHandlers(
  acceptor: SocketAcceptor,
  maxPayloadLength: number,
): BunWebSocketHandlers {
  return {
    open: (ws) => {
      const data = ws.data as BunSocketData;
      const { request, remoteAddr } = data.swaggersocket!;
      data.swaggersocket = undefined;
      const socket = adaptBunSocket(ws);
      data.socket = socket;
      acceptor.accept({ socket, origin: request.headers.get("origin"), request, remoteAddr });
    },
    message: (ws, message) => (ws.data as BunSocketData).socket?.dispatchMessage(message),
    close: (ws, code, reason) => (ws.data as BunSocketData).socket?.dispatchClose(code, reason),
    drain: (ws) => (ws.data as BunSocketData).socket?.dispatchDrain(),
    maxPayloadLength,
  };
}

/**
 * Listens with `Bun.serve` (`tls` for TLS).
 *
 * @param bun The `Bun` global.
 * @param options Where, and what answers.
 * @param websocket The server's socket handlers.
 * @returns The listener.
 */
export function listenOnBun(
  bun: BunGlobal,
  options: ListenOptions,
  websocket: BunWebSocketHandlers,
): Listening {
  const { hostname, port, tls } = options;
  const server = bun.serve({
    hostname,
    port,
    ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
    fetch: (request, bunServer) => options.serve(request, bunServer),
    websocket,
  });
  return {
    addr: { hostname: server.hostname, port: server.port },
    stop: async () => {
      await server.stop(false);
    },
  };
}

let bunDefaultRoots: readonly string[] | undefined;

/**
 * Bun's `new WebSocket(url, { tls: { ca } })`. Bun's `ca` replaces the default roots, so
 * `node:tls`'s `rootCertificates` go in too and both runtimes mean the same.
 *
 * @param process Bun's `process` global.
 * @param caCerts PEM certificates.
 * @returns The constructor's fields.
 */
export function dialTlsOnBun(process: ProcessGlobal | undefined, caCerts: string[]): DialTls {
  if (bunDefaultRoots === undefined) {
    const tls = process?.getBuiltinModule?.("node:tls") as
      | { rootCertificates?: readonly string[] }
      | undefined;
    bunDefaultRoots = tls?.rootCertificates ?? [];
  }
  return { init: { tls: { ca: [...bunDefaultRoots, ...caCerts] } } };
}

/**
 * Bun's script facilities.
 *
 * @param bun The `Bun` global.
 * @param process Bun's `process` global.
 * @returns Them.
 */
export function scriptOnBun(bun: BunGlobal, process: ProcessGlobal): ScriptRuntime {
  const env = bun.env;
  return {
    args: bun.argv.slice(2),
    env: (name) => env[name],
    onSignal: (signal, listener) => process.on(signal, listener),
    readStdin: () => bun.stdin.text(),
    exit: (code) => process.exit(code),
    readTextFile: (path) => bun.file(path).text(),
  };
}

/** The part of Bun's TCP `Socket` used here; `data` is its adapter. */
interface BunTcpSocket {
  readonly data: BunTcp;
  /** @returns Bytes written (UTF-8 for a string), or -1 once closed. */
  write(data: string | Uint8Array): number;
  setNoDelay(noDelay: boolean): void;
  pause(): void;
  resume(): void;
  ref(): void;
  unref(): void;
  terminate(): void;
}

/** Bun's callbacks for its TCP sockets: one set for all, each passing the socket. */
interface BunTcpHandlers {
  open(socket: BunTcpSocket): void;
  data(socket: BunTcpSocket, data: Uint8Array): void;
  drain(socket: BunTcpSocket): void;
  end(socket: BunTcpSocket): void;
  close(socket: BunTcpSocket, error?: Error): void;
  error(socket: BunTcpSocket, error: Error): void;
  connectError(socket: BunTcpSocket, error: Error): void;
}

const BUN_TCP_HANDLERS: BunTcpHandlers = {
  open: (socket) => socket.data.opened(socket),
  // Bun hands over its `Buffer`, whatever `binaryType` says.
  data: (socket, data) => socket.data.received(plainBytes(data)),
  drain: (socket) => socket.data.flush(),
  end: (socket) => socket.data.ended(),
  close: (socket, error) => socket.data.gone(error),
  error: (socket, error) => socket.data.failed(error),
  connectError: (socket, error) => {
    socket.data.failed(error);
    socket.data.gone();
  },
};

/** A {@linkcode TcpConnection} over Bun's TCP socket; Bun's callbacks call into it. */
class BunTcp implements TcpConnection {
  readonly #handlers: TcpHandlers;
  #socket: BunTcpSocket | undefined;
  /** Bytes the socket did not take yet. */
  readonly #unsent = new Unsent();
  #paused = false;
  #unref = false;
  #failed = false;
  #closed = false;
  destroyed = false;
  /** Bun reads into buffers of its own, handed to `data` as each read comes. */
  readonly readBufferBytes = 0;

  constructor(handlers: TcpHandlers) {
    this.#handlers = handlers;
  }

  opened(socket: BunTcpSocket): void {
    this.#socket = socket;
    if (this.destroyed) return socket.terminate();
    socket.setNoDelay(true);
    if (this.#paused) socket.pause();
    if (this.#unref) socket.unref();
    this.flush();
  }

  received(data: Uint8Array): void {
    if (!this.destroyed) this.#handlers.data(data);
  }

  ended(): void {
    if (!this.destroyed) this.#handlers.end();
  }

  failed(error: Error): void {
    if (this.destroyed || this.#failed) return;
    this.#failed = true;
    this.#handlers.error(error);
  }

  gone(error?: Error): void {
    if (this.#closed) return;
    if (error) this.failed(error);
    this.#closed = true;
    this.destroyed = true;
    this.#unsent.clear();
    this.#handlers.close();
  }

  write(...parts: (string | Uint8Array)[]): boolean {
    if (this.destroyed) return false;
    const socket = this.#socket;
    if (socket && this.#unsent.bytes === 0) {
      const [part] = parts;
      // A string Bun writes as UTF-8: the same bytes, when it is ASCII.
      if (parts.length === 1 && typeof part === "string" && isAscii(part)) {
        const written = socket.write(part);
        if (written === part.length) return true;
        this.#unsent.add(latin1Bytes([part]).subarray(Math.max(written, 0)));
      } else {
        const bytes = latin1Bytes(parts);
        const written = socket.write(bytes);
        if (written === bytes.byteLength) return true;
        this.#unsent.add(bytes.subarray(Math.max(written, 0)));
      }
    } else {
      this.#unsent.add(latin1Bytes(parts));
    }
    return this.#unsent.belowHighWater;
  }

  /** Writes what waits, as far as the socket takes it (on open, and on Bun's `drain`). */
  flush(): void {
    const socket = this.#socket!;
    const unsent = this.#unsent;
    for (let bytes = unsent.first; bytes !== undefined; bytes = unsent.first) {
      const written = Math.max(socket.write(bytes), 0);
      if (this.destroyed) return;
      unsent.wrote(written);
      if (written < bytes.byteLength) return;
    }
  }

  drained(): Promise<void> {
    return this.destroyed ? Promise.resolve() : this.#unsent.drained();
  }

  pause(): void {
    this.#paused = true;
    this.#socket?.pause();
  }

  resume(): void {
    this.#paused = false;
    this.#socket?.resume();
  }

  ref(): void {
    this.#unref = false;
    this.#socket?.ref();
  }

  unref(): void {
    this.#unref = true;
    this.#socket?.unref();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.#unsent.clear();
    // Bun's `close` follows; before the socket opened, `opened` terminates it.
    this.#socket?.terminate();
  }
}

/**
 * Opens a TCP connection with `Bun.connect`.
 *
 * @param bun The `Bun` global.
 * @param hostname The host.
 * @param port The port.
 * @param handlers What hears of it.
 * @returns The connection, opening.
 */
export function connectTcpOnBun(
  bun: BunGlobal,
  hostname: string,
  port: number,
  handlers: TcpHandlers,
): TcpConnection {
  const connection = new BunTcp(handlers);
  // A refusal comes to `connectError` as well as here.
  bun.connect({
    hostname,
    port,
    data: connection,
    socket: BUN_TCP_HANDLERS,
  })
    .catch(() => {});
  return connection;
}
