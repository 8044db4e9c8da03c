/**
 * Deno: its server (`Deno.serve`, `Deno.upgradeWebSocket`), its client's extra CAs
 * (`Deno.createHttpClient`), its TCP connections (`Deno.connect`) and its script facilities,
 * described structurally (no `Deno` type declarations needed). Deno's sockets are standard
 * `WebSocket`s (`_web_socket.ts`).
 *
 * @module
 */

import { adaptWebSocket } from "./_web_socket.ts";
import { latin1Bytes } from "./_latin1.ts";
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

/** The part of `Deno.ServeHandlerInfo` used here. */
export interface DenoServeHandlerInfo {
  /** The client's address. */
  remoteAddr: { hostname: string; port: number };
}

/** The part of the `Deno` global used here. */
export interface DenoGlobal {
  serve(
    options: {
      hostname?: string;
      port?: number;
      onListen?: (addr: unknown) => void;
      cert?: string;
      key?: string;
    },
    handler: (request: Request, info: DenoServeHandlerInfo) => Response | Promise<Response>,
  ): { addr: RemoteAddr; shutdown(): Promise<void> };
  upgradeWebSocket(request: Request): { socket: WebSocket; response: Response };
  createHttpClient?(options: { caCerts: string[] }): { close(): void };
  connect(options: { hostname: string; port: number }): Promise<DenoConn>;
  args: string[];
  env: { get(name: string): string | undefined };
  addSignalListener(signal: string, listener: () => void): void;
  exit(code: number): never;
  readTextFile(path: string): Promise<string>;
  stdin: { readable: ReadableStream<Uint8Array> };
}

/**
 * Listens with `Deno.serve` (`cert` and `key` for TLS).
 *
 * @param deno The `Deno` global.
 * @param options Where, and what answers.
 * @returns The listener.
 */
export function listenOnDeno(deno: DenoGlobal, options: ListenOptions): Listening {
  const { hostname, port, tls } = options;
  const server = deno.serve(
    { hostname, port, onListen: () => {}, ...(tls ? { cert: tls.cert, key: tls.key } : {}) },
    (request, info) => options.serve(request, info)!,
  );
  return {
    addr: { hostname: server.addr.hostname, port: server.addr.port },
    stop: () => server.shutdown(),
  };
}

/**
 * Upgrades with `Deno.upgradeWebSocket` and hands the socket to `acceptor`.
 *
 * @param deno The `Deno` global.
 * @param request The upgrade request.
 * @param info `Deno.serve`'s handler info, for the client's address.
 * @param acceptor Who takes the socket.
 * @returns The 101 response to return from the handler.
 */
export function upgradeOnDeno(
  deno: DenoGlobal,
  request: Request,
  info: DenoServeHandlerInfo | undefined,
  acceptor: SocketAcceptor,
): Response {
  // Deno's info.remoteAddr throws once the request has been upgraded: read it first.
  const remote = info?.remoteAddr;
  // So does the request once upgraded ("Request closed"), and `authorize` reads it later,
  // after the hello: it gets a detached copy.
  const origin = request.headers.get("origin");
  const kept = acceptor.keepsRequests
    ? new Request(request.url, { method: request.method, headers: new Headers(request.headers) })
    : undefined;
  const { socket, response } = deno.upgradeWebSocket(request);
  // `Deno.serve`'s shutdown would overtake the socket's own close frame with a 1001.
  acceptor.socketOpened();
  acceptor.accept({
    socket: adaptWebSocket(socket, "arraybuffer", acceptor.socketClosed),
    origin,
    request: kept,
    remoteAddr: { hostname: remote?.hostname ?? "", port: remote?.port ?? 0 },
  });
  return response;
}

/**
 * Deno's `new WebSocket(url, { client })`, the `client` from `Deno.createHttpClient({ caCerts
 * })`, which adds them to the default roots. It is closed once the socket has opened or
 * failed: only the TLS handshake needs it.
 *
 * @param deno The `Deno` global.
 * @param caCerts PEM certificates.
 * @returns The constructor's fields.
 * @throws {TypeError} If this Deno has no `createHttpClient`.
 */
export function dialTlsOnDeno(deno: DenoGlobal, caCerts: string[]): DialTls {
  if (typeof deno.createHttpClient !== "function") throw cannotTrust();
  const client = deno.createHttpClient({ caCerts });
  return { init: { client }, release: () => client.close() };
}

/**
 * Takes a `Response`'s body if it is all in memory, as its constructor was given it (a
 * string, bytes, JSON) with nothing read and no stream asked for: the bytes or the text,
 * and the body is then used, as reading it makes it. A responder then sends the body with
 * its head at once, with no stream, reader or promise made of it (making that stream was
 * 8 % of a Deno exchange's CPU one at a time, and reading the body without it ~1 µs more).
 * Deno keeps such a body unstreamed until asked (`Deno.serve` writes it without a stream
 * too), in the `Response`'s private inner response, whose symbol is found once by its
 * description; the take does what the inner body's own `consume()` does. Read the
 * response's `headers` first: Deno makes the inner body of a string or JSON response only
 * then. On a Deno whose internals differ this is `undefined`, and every body streams.
 *
 * @returns The take, or `undefined`.
 */
export function takeBodyOnDeno():
  | ((response: Response) => Uint8Array | string | undefined)
  | undefined {
  const inner = Object.getOwnPropertySymbols(new Response(""))
    .find((symbol) => symbol.description === "response");
  if (inner === undefined) return undefined;
  return (response) => {
    const body = (response as unknown as Record<symbol, { body?: unknown } | undefined>)[inner]
      ?.body as { streamOrStatic?: unknown } | null | undefined;
    const held = body?.streamOrStatic as { body?: unknown; consumed?: unknown } | null | undefined;
    if (
      typeof held !== "object" || held === null || held instanceof ReadableStream ||
      held.consumed !== false
    ) {
      return undefined;
    }
    const bytes = held.body;
    if (typeof bytes !== "string" && !(bytes instanceof Uint8Array)) return undefined;
    held.consumed = true;
    return bytes;
  };
}

/**
 * Aborts the `signal` of a `Request` made without `init.signal`, as an `AbortController`
 * aborts its own: the handler's request then needs no controller. Given a signal, Deno's
 * `Request` makes one that follows it, with a `WeakRef` and a `Set` (~5 µs a request in a
 * loop, 2–3 µs of an exchange's CPU one at a time); made without, its signal is made only if
 * asked for. The signal's private abort step is found once by its description and tried on
 * a probe; on a Deno whose internals differ this is `undefined`, and requests get a
 * controller's signal as before.
 *
 * @returns The abort, or `undefined`.
 */
export function abortRequestOnDeno(): ((request: Request, reason: unknown) => void) | undefined {
  const signalAbort = Object.getOwnPropertySymbols(AbortSignal.prototype)
    .find((symbol) => symbol.description === "[[signalAbort]]");
  if (signalAbort === undefined) return undefined;
  const abort = (request: Request, reason: unknown): void => {
    (request.signal as unknown as Record<symbol, (reason: unknown) => void>)[signalAbort](reason);
  };
  const probe = new Request("http://localhost/");
  const reason = new Error("probe");
  try {
    abort(probe, reason);
  } catch {
    return undefined;
  }
  return probe.signal.aborted && probe.signal.reason === reason ? abort : undefined;
}

/** The error for a runtime whose `WebSocket` takes no extra CAs. */
export function cannotTrust(): TypeError {
  return new TypeError("Cannot trust caCerts here: only Deno's and Bun's WebSocket take them");
}

/**
 * Deno's script facilities.
 *
 * @param deno The `Deno` global.
 * @returns Them.
 */
export function scriptOnDeno(deno: DenoGlobal): ScriptRuntime {
  return {
    args: deno.args,
    env: (name) => deno.env.get(name),
    onSignal: (signal, listener) => deno.addSignalListener(signal, listener),
    readStdin: () => new Response(deno.stdin.readable).text(),
    exit: (code) => deno.exit(code),
    readTextFile: (path) => deno.readTextFile(path),
  };
}

/** The part of `Deno.Conn` used here. */
interface DenoConn {
  /** @returns Bytes read, or `null` at the end. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** @returns Bytes written: maybe fewer than given. */
  write(bytes: Uint8Array): Promise<number>;
  setNoDelay(noDelay: boolean): void;
  ref(): void;
  unref(): void;
  close(): void;
}

/**
 * A read's buffer while what comes fits it: what a connection's pending read holds while it
 * is idle (a kept-alive socket to an upstream, of which an agent keeps up to 256).
 */
const TCP_READ_SMALL = 8 * 1024;
/** A read's buffer after one that filled its own: a body streaming in. */
const TCP_READ_LARGE = 64 * 1024;

/** A {@linkcode TcpConnection} over a `Deno.Conn`: a read loop and a write loop. */
class DenoTcp implements TcpConnection {
  readonly #handlers: TcpHandlers;
  #conn: DenoConn | undefined;
  /** Bytes not written yet; the write loop runs while there are any. */
  readonly #unsent = new Unsent();
  #writing = false;
  #paused = false;
  /** Wakes the read loop from a pause. */
  #resumed: (() => void) | undefined;
  #unref = false;
  #closed = false;
  /** The read loop's buffers' bytes: the small one, and the large one while it is in use. */
  #readBufferBytes = 0;
  destroyed = false;

  constructor(deno: DenoGlobal, hostname: string, port: number, handlers: TcpHandlers) {
    this.#handlers = handlers;
    deno.connect({ hostname, port }).then((conn) => this.#opened(conn))
      // A throw in `#opened` too: not an unhandled rejection, which ends a Deno process.
      .catch((error: Error) => this.#fail(error));
  }

  #opened(conn: DenoConn): void {
    if (this.destroyed) {
      conn.close();
      return this.#gone();
    }
    this.#conn = conn;
    // First: from here on, the read loop's end is what says `close`.
    void this.#read(conn);
    conn.setNoDelay(true);
    if (this.#unref) conn.unref();
    if (this.#unsent.bytes > 0) void this.#write();
  }

  async #read(conn: DenoConn): Promise<void> {
    const small = new Uint8Array(TCP_READ_SMALL);
    let buffer = small;
    try {
      for (;;) {
        this.#readBufferBytes = buffer === small
          ? small.byteLength
          : small.byteLength + buffer.byteLength;
        if (this.#paused) await new Promise<void>((resolve) => this.#resumed = resolve);
        if (this.destroyed) break;
        const n = await conn.read(buffer);
        if (this.destroyed) break;
        if (n === null) {
          this.#handlers.end();
          break;
        }
        // A copy: the owner keeps it (as a body chunk), and the buffer is read into again.
        this.#handlers.data(buffer.slice(0, n));
        // A full buffer has more behind it: read on in large ones until one comes short, then
        // in the small one again, which is all that a connection going idle keeps.
        buffer = n < buffer.byteLength
          ? small
          : buffer === small
          ? new Uint8Array(TCP_READ_LARGE)
          : buffer;
      }
    } catch (error) {
      // A read cut by `destroy()` rejects too; only a failure of the connection is heard.
      if (!this.destroyed) this.#handlers.error(error as Error);
    }
    this.#readBufferBytes = 0;
    // As `node:net` does (no half-open connections): the peer's end closes ours.
    this.destroy();
    this.#gone();
  }

  async #write(): Promise<void> {
    this.#writing = true;
    const unsent = this.#unsent;
    try {
      for (let bytes = unsent.first; bytes !== undefined; bytes = unsent.first) {
        const written = await this.#conn!.write(bytes);
        // Destroyed meanwhile: what waited is gone.
        if (this.destroyed) break;
        unsent.wrote(written);
      }
    } catch (error) {
      this.#fail(error as Error);
    }
    this.#writing = false;
  }

  #fail(error: Error): void {
    if (this.destroyed) return;
    this.#handlers.error(error);
    this.destroy();
    // Not connected, there is no read loop to end it.
    if (!this.#conn) this.#gone();
  }

  #gone(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.destroyed = true;
    this.#handlers.close();
  }

  write(...parts: (string | Uint8Array)[]): boolean {
    if (this.destroyed) return false;
    this.#unsent.add(latin1Bytes(parts));
    if (this.#conn && !this.#writing) void this.#write();
    return this.#unsent.belowHighWater;
  }

  drained(): Promise<void> {
    return this.destroyed ? Promise.resolve() : this.#unsent.drained();
  }

  get readBufferBytes(): number {
    return this.#readBufferBytes;
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    this.#resumed?.();
    this.#resumed = undefined;
  }

  ref(): void {
    this.#unref = false;
    this.#conn?.ref();
  }

  unref(): void {
    this.#unref = true;
    this.#conn?.unref();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.#unsent.clear();
    // A pending read rejects, or a paused loop wakes, and the read loop ends with `close`.
    this.#conn?.close();
    this.#resumed?.();
  }
}

/**
 * Opens a TCP connection with `Deno.connect`.
 *
 * @param deno The `Deno` global.
 * @param hostname The host.
 * @param port The port.
 * @param handlers What hears of it.
 * @returns The connection, opening.
 */
export function connectTcpOnDeno(
  deno: DenoGlobal,
  hostname: string,
  port: number,
  handlers: TcpHandlers,
): TcpConnection {
  return new DenoTcp(deno, hostname, port, handlers);
}
