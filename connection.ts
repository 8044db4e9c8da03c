/**
 * A connection: HTTP exchanges in both directions over one WebSocket.
 *
 * `Connection` is the I/O shell around the protocol's {@linkcode Session}: it feeds the
 * session the socket's messages, turns the session's events into calls on its parts, and
 * owns the connection's lifecycle (handshake hooks, graceful close, the end). The parts,
 * one job each, live in `connection/`:
 *
 * - `_output.ts`: the output driver, the one way output leaves and the rules for when;
 * - `_caller.ts`: the caller's side of exchanges (`fetch`, `forward`);
 * - `_responder.ts`: the responder's side (the handler, held responses);
 * - `_body_pump.ts`: reading bodies given as streams onto their streams;
 * - `_context.ts`: what the parts share.
 *
 * @module
 */

import { type Clock, systemClock } from "./_clock.ts";
import type { Logger } from "./_logger.ts";
import type { Socket, SocketHost } from "./_socket.ts";
import type { AnswerParts } from "./connection/_answer_parts.ts";
import { BodyPumps } from "./connection/_body_pump.ts";
import { abortReason, Caller, refusal } from "./connection/_caller.ts";
import type { BodyBytes } from "./connection/_inbound_body.ts";
import { ConnectionContext } from "./connection/_context.ts";
import { type StalledReaders, StalledReaderWatch } from "./connection/_stalled_readers.ts";
import { Output, type OutputHost, Urgency } from "./connection/_output.ts";
import {
  forwardParts,
  type ForwardRequest,
  type RequestParts,
  requestParts,
} from "./connection/_request_parts.ts";
import { type RemoteAddr, Responder } from "./connection/_responder.ts";
import { ConnectionClosedError, ProtocolError } from "./errors.ts";
import { CloseCode, fitCloseReason } from "./protocol/close_codes.ts";
import { GoingAwayError } from "./protocol/errors.ts";
import type { Welcome } from "./protocol/handshake.ts";
import type { Session, SessionEvent } from "./protocol/session.ts";

/** Which end of the socket a connection is. */
export const ConnectionType = {
  /** The server's end: it accepted the socket. */
  ServerSide: "ServerSide",
  /** The client's end: it dialed. */
  ClientSide: "ClientSide",
} as const;

/** A value of {@linkcode ConnectionType}. */
export type ConnectionType = typeof ConnectionType[keyof typeof ConnectionType];

/** What a handler gets besides the request. */
export interface HandlerInfo {
  /** The connection the request came over. */
  connection: Connection;
  /**
   * The peer's address, shaped like `Deno.ServeHandlerInfo`'s: one frozen object for every
   * request of the connection.
   */
  remoteAddr: { transport: "tcp"; hostname: string; port: number };
  /**
   * The request target exactly as the peer sent it: for a relative request the path and
   * query, dot segments, `//`, `\` and encodings untouched, where `request.url` holds
   * what the URL parser made of it. A proxy forwards this (see `Connection.forward`).
   */
  readonly target: string;
  /**
   * The body of a GET or HEAD request that came with one, which a `Request` cannot carry
   * (`request.body` is then `null`): a proxy forwards it (see `Connection.forward`). `null`
   * for any other request, whose body is `request.body`.
   */
  readonly body: ReadableStream<Uint8Array> | null;
  /**
   * Resolves when the exchange has ended: the response was sent in full, or the peer
   * cancelled, or the connection was lost. Never rejects. (`Deno.ServeHandlerInfo` has it too.)
   */
  readonly completed: Promise<void>;
}

/**
 * Serves requests that arrive over a connection. Any `Deno.serve` / `Bun.serve`
 * handler or Hono `app.fetch` fits.
 */
export type Handler = (
  request: Request,
  info: HandlerInfo,
) => Response | Promise<Response>;

/** The ping hook: gets the ping's data, may return the data the pong carries. */
export type PingHandler = (appData: string, connection: Connection) => string | void;

/** The pong hook: gets the pong's data and the measured round-trip time. */
export type PongHandler = (
  appData: string,
  rtt: number | undefined,
  connection: Connection,
) => void;

/** How a connection ended. */
export interface ConnectionCloseInfo {
  /** The WebSocket close code (1006: dropped without a close frame). */
  code: number;
  /** The close reason. */
  reason: string;
  /** Why it failed, when it did not end in an orderly way. */
  error?: Error;
}

/** Options for {@linkcode Connection.close}. */
export interface CloseOptions {
  /** Milliseconds to let in-flight exchanges finish before closing anyway. Default 5 000; 0 closes at once. */
  timeout?: number;
  /** The close code. Default 1000. */
  code?: number;
  /** The close reason. Default `""`. */
  reason?: string;
}

/**
 * What the server or client does when the handshake reaches it.
 *
 * @internal
 */
export interface HandshakeHooks {
  /** Server side: the client said hello. Answer with `accept` or `refuse`. */
  onHello?: (
    hello: { metadata: unknown; resume?: string; metadataCost: number },
    answer: {
      accept(welcome: Omit<Welcome, "settings" | "heartbeat">): void;
      refuse(code: CloseCode, reason: string): void;
    },
  ) => void;
  /** The handshake completed. */
  onOpen?: (connection: Connection, welcome: Welcome | undefined) => void;
  /** The connection ended (after the handshake or not). */
  onEnd?: (connection: Connection, info: ConnectionCloseInfo) => void;
  /** `serve()` was called: the client keeps the handler for the next connection. */
  onServe?: (handler: Handler | undefined) => void;
}

/**
 * Everything a connection is made of. Server and client build these; applications do not.
 *
 * @internal
 */
export interface ConnectionInit {
  /** The socket, already adapted. */
  socket: Socket;
  /** The protocol state machine, configured for this end. */
  session: Session;
  /** Which end this is. */
  type: ConnectionType;
  /** The client's metadata (the server learns it from the hello). */
  metadata?: unknown;
  /** The peer's address. */
  remoteAddr?: { hostname: string; port: number };
  /** Where log lines go. */
  logger: Logger;
  /** The ping hook. */
  onPing?: PingHandler;
  /** The pong hook. */
  onPong?: PongHandler;
  /** The handler to serve from the start. */
  handler?: Handler;
  /**
   * The endpoint's clock, the one its session's times are on: deadlines, the drain timer
   * and the close timeout all run on it. The system clock by default.
   */
  clock?: Clock;
  /**
   * Takes the body of a handler's `Response` if it is all in memory, to be sent with its
   * head rather than through a stream (the runtime's `takeBodyInMemory`). None: every body
   * streams.
   */
  takeBodyInMemory?: (response: Response) => Uint8Array | string | undefined;
  /**
   * Aborts the `signal` of a `Request` made without one (the runtime's `abortRequest`): a
   * handler's request is then made without a controller. None: each gets a controller's signal.
   */
  abortRequest?: (request: Request, reason: unknown) => void;
  /**
   * Response and request bodies are read from the application only while less than this
   * many bytes wait to be sent (the outbound share of `limits.maxBufferedBytes`). Default
   * 4 MiB.
   */
  maxQueuedBytes?: number;
  /** Cut readers that stall the connection (`limits.stalledReaderTimeout`); none: never. */
  stalledReaders?: StalledReaders;
  /** Handshake wiring. */
  hooks?: HandshakeHooks;
}

export type { ForwardRequest } from "./connection/_request_parts.ts";

/** Signature of {@linkcode Connection.fetch}: the standard `fetch`. */
export type FetchFunction = (
  input: string | URL | Request,
  init?: RequestInit,
) => Promise<Response>;

/**
 * One WebSocket carrying HTTP exchanges both ways: `serve()` a handler for the
 * peer's requests and `fetch()` the peer's handler. Connections are made by
 * {@linkcode WebSocketServer} and {@linkcode WebSocketClient}.
 *
 * @example Usage
 * ```ts ignore
 * import { WebSocketClient } from "@swaggersocket/swaggersocket";
 *
 * const connection = await new WebSocketClient({ url: "ws://127.0.0.1:8080" }).connect();
 * connection.serve((request) => new Response(`agent saw ${new URL(request.url).pathname}`));
 * const response = await connection.fetch("/server/status");
 * console.log(response.status, await response.text());
 * ```
 */
export class Connection {
  /** Which end this is: `ConnectionType.ServerSide` or `ConnectionType.ClientSide`. */
  readonly type: ConnectionType;
  /** The client's metadata (any JSON value), as given to `withMetadata`. */
  readonly metadata: unknown;

  readonly #socket: Socket;
  readonly #session: Session;
  readonly #logger: Logger;
  readonly #clock: Clock;
  #stalledReaders: StalledReaderWatch | undefined;
  #hooks: HandshakeHooks;
  readonly #onPing: PingHandler | undefined;
  readonly #onPong: PongHandler | undefined;
  /** The peer's address, also what handlers get as `info.remoteAddr` (hence frozen). */
  readonly #remoteAddr: RemoteAddr;
  readonly #context: ConnectionContext;
  readonly #output: Output<Connection>;
  readonly #pumps: BodyPumps;
  readonly #caller: Caller;
  readonly #responder: Responder<Connection>;
  #id = "";
  #ended: ConnectionCloseInfo | undefined;
  #closing: { code: number; reason: string } | undefined;
  /** How this end closed the socket, which its close event then reports. */
  #closedWith: ConnectionCloseInfo | undefined;
  // What only some applications ask for is made when first asked: a server holds thousands
  // of idle connections (bench/RESULTS.md, "Idle memory").
  /** When the handshake completed, in milliseconds since the epoch. */
  #openedAt: number | undefined;
  #connectedAt: Date | undefined;
  #closed: Promise<ConnectionCloseInfo> | undefined;
  #resolveClosed: ((info: ConnectionCloseInfo) => void) | undefined;
  #fetch: FetchFunction | undefined;

  /** What every connection's output driver calls back into. */
  static readonly #outputHost: OutputHost<Connection> = {
    processEvents: (connection) => connection.#processEvents(),
    releaseHeld: (connection) => connection.#responder.releaseHeld(),
    outputMoved: (connection) => connection.#pumps.wakeQueued(),
    sendFailed: (connection, error) =>
      connection.#end({ code: 1006, reason: "Send failed", error }),
    closeTimedOut: (connection) =>
      connection.#closeSocket(connection.#closing!.code, connection.#closing!.reason),
  };

  /** What every connection's socket calls back into. */
  static readonly #socketHost: SocketHost<Connection> = {
    message: (connection, data) => connection.#onMessage(data),
    closed: (connection, code, reason) =>
      connection.#end(connection.#closedWith ?? { code, reason, ...abnormal(code, reason) }),
    drained: (connection) => connection.#output.wake(),
  };

  /**
   * Made by {@linkcode WebSocketServer} and {@linkcode WebSocketClient}, not by applications.
   *
   * @internal
   * @param init The socket, session and wiring.
   */
  constructor(init: ConnectionInit) {
    this.type = init.type;
    this.metadata = init.metadata ?? null;
    this.#socket = init.socket;
    this.#session = init.session;
    this.#logger = init.logger;
    this.#clock = init.clock ?? systemClock;
    this.#hooks = init.hooks ?? {};
    this.#onPing = init.onPing;
    this.#onPong = init.onPong;
    const { hostname = "", port = 0 } = init.remoteAddr ?? {};
    this.#remoteAddr = Object.freeze({ transport: "tcp", hostname, port });
    const context = this.#context = new ConnectionContext(
      init.session,
      init.logger,
      () => this.#closeIfDrained(),
    );
    const pumps = this.#pumps = new BodyPumps(context, init.maxQueuedBytes);
    this.#caller = new Caller(context, pumps);
    const responder = this.#responder = new Responder<Connection>(
      context,
      pumps,
      this,
      this.#remoteAddr,
      init.takeBodyInMemory,
      init.abortRequest,
    );
    responder.handler = init.handler;
    if (init.stalledReaders) {
      const caller = this.#caller;
      const session = init.session;
      this.#stalledReaders = new StalledReaderWatch(init.stalledReaders, this.#clock, {
        get unreadBytes() {
          return session.unreadBytes;
        },
        *bodies() {
          yield* caller.inboundBodies();
          yield* responder.inboundBodies();
        },
      });
    }
    this.#output = context.output = new Output(
      context,
      init.socket,
      this.#clock,
      Connection.#outputHost,
      this,
    );
    init.socket.listen(Connection.#socketHost, this);
    this.#output.wake();
  }

  /** When the handshake completed, as a `Date`. */
  get connectedAt(): Date | undefined {
    if (this.#openedAt === undefined) return undefined;
    return this.#connectedAt ??= new Date(this.#openedAt);
  }

  /** Resolves once, when the connection has ended; never rejects. */
  get closed(): Promise<ConnectionCloseInfo> {
    if (this.#closed) return this.#closed;
    const ended = this.#ended;
    return this.#closed = ended
      ? Promise.resolve(ended)
      : new Promise((resolve) => this.#resolveClosed = resolve);
  }

  /** The connection id (a ULID), assigned by the server during the handshake. */
  get id(): string {
    return this.#id;
  }

  /** The last heartbeat round-trip time in milliseconds, if one was measured. */
  get rtt(): number | undefined {
    return this.#session.rtt;
  }

  /** The peer's address as `"host:port"`. */
  get remoteAddr(): string {
    const { hostname, port } = this.#remoteAddr;
    return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
  }

  /**
   * Bytes this connection holds now on its peer's behalf: received body bytes the
   * application has not read yet (charged at what they keep alive), body bytes and frames
   * waiting to be sent, and what the socket has not written yet. `limits.maxBufferedBytes`
   * bounds it, whatever the peer sends.
   */
  get bufferedBytes(): number {
    const context = this.#context;
    return context.inboundBytes + context.heldBytes + this.#session.bufferedBytes +
      this.#socket.bufferedAmount;
  }

  /** Exchanges running now in both directions. */
  get inFlight(): number {
    return this.#caller.size + this.#responder.size;
  }

  /** Whether the connection has ended. */
  get isClosed(): boolean {
    return this.#ended !== undefined;
  }

  /**
   * Serves the peer's requests with `handler`, replacing any earlier handler. Any
   * `Deno.serve` handler or Hono `app.fetch` works unchanged. A handler that throws
   * answers 500 without details; with no handler the peer gets 501.
   *
   * @example Usage
   * ```ts ignore
   * connection.serve((request) => Response.json({ path: new URL(request.url).pathname }));
   * ```
   *
   * @param handler The request handler, or `undefined` to stop serving.
   * @returns This connection.
   */
  serve(handler: Handler | undefined): this {
    this.#responder.handler = handler;
    this.#hooks.onServe?.(handler);
    return this;
  }

  /**
   * Sends a request to the peer's handler: the standard `fetch`, bound, so it can be
   * passed anywhere a `fetch` goes. `input` is a URL (relative ones such as `"/pets/1"` are
   * fine) or a `Request`, `init` the usual `RequestInit`; it resolves with the peer's
   * response, whose body streams as the peer produces it.
   *
   * Aborting `init.signal` rejects with its reason (an `AbortError`) and aborts the
   * peer's `request.signal`. If the connection ends first, it rejects with
   * {@linkcode ConnectionClosedError}.
   *
   * @example Usage
   * ```ts ignore
   * const response = await connection.fetch("/pets", {
   *   method: "POST",
   *   headers: { "content-type": "application/json" },
   *   body: JSON.stringify({ name: "Rex" }),
   *   signal: AbortSignal.timeout(5_000),
   * });
   * ```
   */
  get fetch(): FetchFunction {
    return this.#fetch ??= (input, init) => {
      return new Promise<Response>((resolve, reject) => {
        let parts: RequestParts;
        try {
          parts = requestParts(input, init);
        } catch (error) {
          return reject(error);
        }
        this.#send(parts, resolve as (answer: Response | AnswerParts) => void, reject);
      });
    };
  }

  /**
   * Sends a request exactly as given, for proxies: the target goes on the wire as it is
   * (`/a/../b//c?` is not resolved, re-encoded or trimmed: the peer's handler finds it in
   * `info.target`), the headers as listed, any method that is a token. Otherwise it is
   * {@linkcode fetch}: same response, errors and abort. One difference in timing: while
   * other exchanges are in flight, a forwarded request leaves at the end of the macrotask
   * rather than once its microtasks have run, so that the requests an HTTP server hands
   * over in one turn of the event loop share one WebSocket message.
   *
   * @example Forwarding what a `Deno.serve` handler received
   * ```ts ignore
   * Deno.serve((request) => {
   *   const url = request.url; // Deno keeps the raw target: "http://host/a/../b"
   *   return connection.forward({
   *     method: request.method,
   *     target: url.slice(url.indexOf("/", url.indexOf("//") + 2)),
   *     headers: request.headers,
   *     body: request.body,
   *     signal: request.signal,
   *   });
   * });
   * ```
   *
   * @param request The method, target, headers, body and signal.
   * @returns The peer's response; its body streams as the peer produces it.
   */
  forward(request: ForwardRequest): Promise<Response> {
    return this.#forward(request, false) as Promise<Response>;
  }

  /**
   * {@linkcode forward}, answered in parts rather than as a `Response`: what the gateway's
   * front writes to its caller (see `connection/_answer_parts.ts`). The same errors and abort.
   *
   * @internal
   * @param request The method, target, headers, body and signal.
   * @returns The peer's answer: status, checked headers, and its body as bytes or a stream.
   */
  forwardAsParts(request: ForwardRequest): Promise<AnswerParts> {
    return this.#forward(request, true) as Promise<AnswerParts>;
  }

  #forward(request: ForwardRequest, inParts: boolean): Promise<Response | AnswerParts> {
    return new Promise<Response | AnswerParts>((resolve, reject) => {
      let parts: RequestParts;
      try {
        parts = forwardParts(request);
      } catch (error) {
        return reject(error);
      }
      parts.inParts = inParts;
      this.#send(parts, resolve, reject);
    });
  }

  /**
   * Closes gracefully: no new exchanges either way, in-flight ones get `timeout`
   * milliseconds to finish, then the socket closes.
   *
   * @example Usage
   * ```ts ignore
   * await connection.close({ timeout: 1_000 });
   * ```
   *
   * @param options Timeout, code and reason.
   * @returns Resolves when the connection has ended.
   */
  close(options: CloseOptions = {}): Promise<void> {
    const code = options.code ?? CloseCode.Normal;
    const reason = options.reason ?? "";
    if (this.#ended) return Promise.resolve();
    if (!this.#closing) {
      this.#closing = { code, reason };
      this.#output.closeAfter(options.timeout ?? 5_000);
      this.#session.goAway(code, reason);
      this.#output.wake();
      this.#closeIfDrained();
    }
    return this.closed.then(() => {});
  }

  /** Closes at once (`close({ timeout: 0 })`); for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close({ timeout: 0 });
  }

  /** A request from `fetch` or `forward`: refused here if the connection is ending, else sent. */
  #send(
    parts: RequestParts,
    resolve: (answer: Response | AnswerParts) => void,
    reject: (error: unknown) => void,
  ): void {
    const signal = parts.signal;
    if (signal?.aborted) return reject(abortReason(signal));
    const ended = this.#ended;
    if (ended) {
      return reject(
        new ConnectionClosedError(
          `Connection closed: ${ended.code}${ended.reason ? ` ${ended.reason}` : ""}`,
          ended.code,
        ),
      );
    }
    // This end is closing, its GOAWAY perhaps not queued yet (during the handshake).
    if (this.#closing) return reject(refusal(new GoingAwayError()));
    this.#caller.send(parts, resolve, reject);
  }

  // ---- driving the session -------------------------------------------------

  #onMessage(data: Uint8Array | string): void {
    if (this.#ended) return;
    if (typeof data === "string") {
      this.#fail(
        new ProtocolError("Text messages are not part of the protocol", CloseCode.ProtocolError),
      );
      return;
    }
    this.#context.messagesIn++;
    this.#session.handleMessage(data, this.#clock.now());
    this.#processEvents();
    // (Not on a connection the message ended: its watch has stopped for good.)
    if (!this.#ended) this.#stalledReaders?.check();
    // A reset or a finished stream may have freed queued output.
    this.#pumps.wakeQueued();
    this.#output.wake(Urgency.Input);
  }

  #processEvents(): void {
    for (let event = this.#session.pollEvent(); event; event = this.#session.pollEvent()) {
      this.#dispatch(event);
      if (this.#ended) return;
    }
  }

  #dispatch(event: SessionEvent): void {
    switch (event.type) {
      case "hello":
        this.#onHello(event.metadata, event.resume, event.metadataCost);
        return;
      case "open":
        this.#id = event.id;
        this.#openedAt = Date.now();
        this.#openedWith(event.welcome);
        return;
      case "request":
        this.#responder.onRequest(event.streamId, event.head, this.#arrived(event));
        return;
      case "response":
        this.#caller.onResponse(event.streamId, event.head, this.#arrived(event));
        return;
      case "data":
        if (event.local) {
          this.#caller.onData(event.streamId, event.chunk, event.end, event.retained);
        } else this.#responder.onData(event.streamId, event.chunk, event.end, event.retained);
        return;
      case "reset":
        if (event.local) {
          this.#caller.onReset(event.streamId, event.code, event.reason, event.byPeer);
        } else {
          this.#responder.fail(
            event.streamId,
            new DOMException(`The peer cancelled the request: ${event.reason}`, "AbortError"),
          );
        }
        return;
      case "writable":
        this.#pumps.wakeWriter(event.streamId);
        return;
      case "finished":
        if (event.local) this.#caller.finish(event.streamId);
        else this.#responder.finish(event.streamId);
        return;
      case "ping":
        this.#callHook(() => this.#onPing?.(event.data, this));
        return;
      case "pong":
        this.#callHook(() => this.#onPong?.(event.data, event.rtt, this));
        return;
      case "goaway":
        this.#logger.debug("swaggersocket: peer is going away", event.reason);
        this.#closeIfDrained();
        return;
      case "close":
        this.#closeSocket(event.code, event.reason, event.error);
        return;
    }
  }

  /**
   * A head's body: `null` for none, the bytes if they came whole with the head (a small
   * body usually does; the `Request` or `Response` then gets bytes instead of a stream,
   * which costs several times less to build and to read), `undefined` if it streams in.
   */
  #arrived(
    event: { streamId: number; end: boolean; body?: Uint8Array },
  ): BodyBytes | null | undefined {
    if (event.end) return null;
    const body = event.body;
    if (body === undefined) return undefined;
    // Handed to the application whole: its connection credit comes back at once.
    this.#session.consume(event.streamId, body.byteLength);
    // The session's chunk: a copy, or a view that is most of its message (whose buffer is
    // an ArrayBuffer, never shared).
    return body as BodyBytes;
  }

  #onHello(metadata: unknown, resume: string | undefined, metadataCost: number): void {
    (this as { metadata: unknown }).metadata = metadata;
    const session = this.#session;
    let answered = false;
    this.#hooks.onHello?.({ metadata, metadataCost, ...(resume !== undefined ? { resume } : {}) }, {
      accept: (welcome) => {
        if (answered || this.#ended) return;
        answered = true;
        session.accept(welcome);
        this.#output.wake();
      },
      refuse: (code, reason) => {
        if (answered || this.#ended) return;
        answered = true;
        session.refuse(code, reason);
        this.#processEvents();
      },
    });
  }

  #callHook(hook: () => void): void {
    try {
      hook();
    } catch (error) {
      this.#logger.error("swaggersocket: heartbeat hook failed", error);
    }
  }

  #closeIfDrained(): void {
    if (this.#ended) return;
    const draining = this.#closing !== undefined || this.#session.phase === "draining";
    if (!draining || this.#caller.size > 0 || this.#responder.size > 0) return;
    if (this.#closing) {
      this.#closeSocket(this.#closing.code, this.#closing.reason);
    }
    // A peer's GOAWAY: the peer closes the socket once its side has drained too.
  }

  #fail(error: ProtocolError): void {
    this.#closeSocket(error.code, error.message, error);
  }

  /** Sends whatever is queued, then closes the socket and ends the connection. */
  #closeSocket(code: number, reason: string, error?: Error): void {
    if (this.#ended) return;
    const fitted = fitCloseReason(reason);
    this.#output.sendLast();
    this.#session.close();
    const info: ConnectionCloseInfo = {
      code,
      reason: fitted,
      ...(error ? { error } : abnormal(code, fitted)),
    };
    // Bun's ServerWebSocket reports the close synchronously from close(): end with this end's
    // own code, reason and error (a ProtocolError), not the generic error onClose would make.
    // (Ending inside that callback matters on Bun: ending after it delays server.stop() by 1 s.)
    this.#closedWith = info;
    try {
      this.#socket.close(code, fitted);
    } catch (cause) {
      this.#logger.debug("swaggersocket: close failed", cause);
    }
    this.#end(info);
  }

  #openedWith(welcome: Welcome | undefined): void {
    const { onOpen, onEnd, onServe } = this.#hooks;
    // What the handshake's hooks hold (the accept path's state, the upgrade request's slot)
    // is not kept for the life of the connection.
    this.#hooks = { onEnd, onServe };
    onOpen?.(this, welcome);
  }

  #end(info: ConnectionCloseInfo): void {
    if (this.#ended) return;
    this.#ended = info;
    this.#context.ended = true;
    this.#session.close();
    this.#output.stop();
    this.#stalledReaders?.stop();
    const error = new ConnectionClosedError(
      `Connection closed: ${info.code}${info.reason ? ` ${info.reason}` : ""}`,
      info.code,
      info.error ? { cause: info.error } : undefined,
    );
    this.#caller.failAll(error);
    this.#responder.failAll(error);
    this.#pumps.wakeAll();
    this.#hooks.onEnd?.(this, info);
    this.#resolveClosed?.(info);
  }
}

function abnormal(code: number, reason: string): { error?: Error } {
  if (code === CloseCode.Normal || code === CloseCode.GoingAway) return {};
  return {
    error: new ConnectionClosedError(`Connection lost: ${code}${reason ? ` ${reason}` : ""}`, code),
  };
}
