/**
 * A connection: HTTP exchanges in both directions over one WebSocket.
 *
 * `Connection` is the I/O shell around the protocol's {@linkcode Session}: it
 * feeds the session socket messages and the clock, turns session events into
 * `Request`s for the handler and `Response`s for `fetch` callers, and drains the
 * session's output into the socket. One deadline per connection serves every
 * timeout (handshake, heartbeat), on a timer shared by all connections
 * (`_deadlines.ts`); output is flushed once per macrotask so that
 * everything a handler produces in one go leaves as one WebSocket message (a batch
 * of `BATCH_FRAMES` or more goes out as soon as it is queued, in parts). A request or
 * response queued whole leaves sooner, once the current microtasks have run. A response
 * waits for its body to end (up to `HOLD_RESPONSE_BYTES`, or until the flush), so a body
 * already in memory travels with its head and the caller gets bytes, not a stream.
 *
 * @module
 */

import { type Clock, systemClock } from "./_clock.ts";
import { Deadline, type Deadlines, deadlinesOf } from "./_deadlines.ts";
import { appendHeaders, headerList } from "./_header_list.ts";
import { InboundBody } from "./_inbound_body.ts";
import {
  forwardParts,
  type ForwardRequest,
  handlerUrl,
  type RequestParts,
  requestParts,
  targetUrl,
} from "./_request_parts.ts";
import { nextTask } from "./_schedule.ts";
import type { Socket } from "./_socket.ts";
import {
  ConnectionClosedError,
  ExchangeRefusedError,
  ExchangeResetError,
  ExchangeTooLargeError,
  ProtocolError,
} from "./errors.ts";
import { CloseCode, fitCloseReason, ResetCode } from "./protocol/close_codes.ts";
import { GoingAwayError, HeaderSizeError, StreamLimitError } from "./protocol/errors.ts";
import type { RequestHead, ResponseHead } from "./protocol/payload.ts";
import type { Session, SessionEvent } from "./protocol/session.ts";
import type { Welcome } from "./protocol/handshake.ts";
import type {
  ConnectionType,
  Handler,
  HandlerInfo,
  Logger,
  PingHandler,
  PongHandler,
} from "./types.ts";

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
   * Response and request bodies are read from the application only while less than this
   * many bytes wait to be sent (the outbound share of `limits.maxBufferedBytes`).
   */
  maxQueuedBytes?: number;
  /** Handshake wiring. */
  hooks?: HandshakeHooks;
}

export type { ForwardRequest } from "./_request_parts.ts";

/** Signature of {@linkcode Connection.fetch}: the standard `fetch`. */
export type FetchFunction = (
  input: string | URL | Request,
  init?: RequestInit,
) => Promise<Response>;

interface Outgoing {
  resolve: (response: Response) => void;
  reject: (error: unknown) => void;
  responded: boolean;
  body: InboundBody | undefined;
  head: boolean;
  /** The request's URL as the target went on the wire (see `ExchangeResponse.url`). */
  target: string;
  cleanup: () => void;
  cancelPump: ((reason: unknown) => void) | undefined;
}

interface Incoming {
  controller: AbortController;
  body: InboundBody | undefined;
  cancelPump: ((reason: unknown) => void) | undefined;
  /** Made only if the handler reads `info.completed`. */
  completed: Promise<void> | undefined;
  settle: (() => void) | undefined;
  ended: boolean;
  /** The response while it is held back with the first chunks of its body (see `#respond`). */
  held: HeldResponse | undefined;
}

/** A response head and the body chunks read so far, not yet handed to the session. */
interface HeldResponse {
  head: ResponseHead;
  chunks: Uint8Array[];
  bytes: number;
}

/** Default for `ConnectionInit.maxQueuedBytes`: an eighth of the default 32 MiB budget. */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/**
 * A body whose stream has less than this waiting may always read its next chunk, however
 * much waits in all: otherwise streams the peer does not read (their windows spent) could
 * hold the whole share and starve a stream the peer is waiting for.
 */
const MIN_STREAM_QUEUED_BYTES = 16 * 1024;

/**
 * A response dropped by its caller with its body unread gives the body up (see
 * `InboundBody.discardUnread`), or it would hold the connection's credit for good.
 */
const droppedResponses = new FinalizationRegistry<InboundBody>((body) =>
  body.discardUnread("The response was garbage-collected before its body was read")
);

/** Methods whose `Request` cannot have a body (in any case: `Request` normalises them). */
const BODYLESS_REQUESTS = new Set(["GET", "HEAD"]);

/** Bytes that arrived whole, as a stream. */
function streamOf(bytes: BodyBytes): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(bytes as Uint8Array);
      controller.close();
    },
  });
}

/**
 * The handler's second argument. A class rather than an object literal with a getter:
 * Deno builds such a literal in ~0.5 µs, a class instance in ~0.01 µs.
 */
class ExchangeInfo implements HandlerInfo {
  readonly #exchange: Incoming;

  constructor(
    readonly connection: Connection,
    readonly remoteAddr: HandlerInfo["remoteAddr"],
    readonly target: string,
    exchange: Incoming,
    readonly body: ReadableStream<Uint8Array> | null,
  ) {
    this.#exchange = exchange;
  }

  /** Made only if the handler asks for it. */
  get completed(): Promise<void> {
    const exchange = this.#exchange;
    if (exchange.ended) return Promise.resolve();
    return exchange.completed ??= new Promise((resolve) => exchange.settle = resolve);
  }
}

/**
 * A response from `connection.fetch()`: a standard `Response` whose `url` is the request's,
 * as a `fetch` response's is. A relative request's URL is resolved against
 * `http://localhost`, as the peer's handler sees it. A subclass rather than a property
 * defined on each response: that costs Deno 0.3–0.4 µs per exchange, the subclass nothing.
 */
class ExchangeResponse extends Response {
  readonly #target: string;

  constructor(body: BodyInit | null | undefined, target: string, init?: ResponseInit) {
    super(body, init);
    this.#target = target;
  }

  override get url(): string {
    return targetUrl(this.#target);
  }

  override clone(): Response {
    const copy = super.clone();
    return new ExchangeResponse(copy.body, this.#target, {
      status: copy.status,
      statusText: copy.statusText,
      headers: copy.headers,
    });
  }
}

/** Body bytes as `Request` and `Response` take them. */
type BodyBytes = Uint8Array<ArrayBuffer>;

/**
 * Output of this many frames goes out at once rather than at the end of the macrotask. With
 * many exchanges in flight a whole batch would otherwise leave as one message, and the two
 * ends would take turns, each idle while the other works; sent in parts, they overlap.
 */
const BATCH_FRAMES = 32;
/**
 * A response whose body is still being read is held back, head and all, until the body
 * ends, this many bytes have been read, or the macrotask flush comes: a body already in
 * memory then leaves in the same message as its head, and the caller gets it whole.
 */
const HOLD_RESPONSE_BYTES = 64 * 1024;
/** Above this many buffered bytes the socket gets no more until it drains. */
const SOCKET_HIGH_WATER = 1024 * 1024;
/**
 * Where outgoing messages are encoded, shared by every connection in the process: each
 * message is handed to `Socket.send`, which copies it before returning (see `_socket.ts`),
 * so one buffer serves them all in turn and a large body makes no garbage per message.
 * Big enough for a full message (1 MiB of DATA plus the chunk that crosses the bound);
 * larger ones, rare, get a buffer of their own.
 */
let sendScratch: Uint8Array | undefined;
const SEND_SCRATCH_BYTES = 2 * 1024 * 1024;
/** Milliseconds a full socket is polled on macrotasks before falling back to a 1 ms timer. */
const DRAIN_POLL_MS = 2;
const NULL_BODY_STATUS = new Set([204, 205, 304]);
const EMPTY = new Uint8Array(0);
const noop = (): void => {};
const encoder = new TextEncoder();

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
  /** When the handshake completed, as a `Date`. */
  connectedAt: Date | undefined;
  /** Resolves once, when the connection has ended; never rejects. */
  readonly closed: Promise<ConnectionCloseInfo>;

  readonly #socket: Socket;
  readonly #session: Session;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #deadlines: Deadlines;
  readonly #hooks: HandshakeHooks;
  readonly #onPing: PingHandler | undefined;
  readonly #onPong: PongHandler | undefined;
  readonly #remoteAddr: { hostname: string; port: number };
  #handler: Handler | undefined;
  readonly #handlerRemoteAddr: HandlerInfo["remoteAddr"];
  #id = "";
  #outgoing = new Map<number, Outgoing>();
  #incoming = new Map<number, Incoming>();
  #writableWaiters = new Map<number, () => void>();
  /** How many incoming exchanges have a response held back (`Incoming.held`). */
  #heldResponses = 0;
  /** Body bytes in held responses. */
  #heldBytes = 0;
  /** What the bodies' waiting chunks are charged (see `InboundBody`). */
  #inboundBytes = 0;
  readonly #maxQueuedBytes: number;
  /** Pumps waiting for queued output to drop below `#maxQueuedBytes` (made when needed). */
  #queueWaiters: (() => void)[] | undefined;
  /** What bodies charge their waiting chunks to; made with the first body, as idle connections have none. */
  #accountFn: ((delta: number) => void) | undefined;
  #flushScheduled = false;
  #sendSoonScheduled = false;
  #drainTimer: unknown;
  /** A macrotask poll of a full socket is pending. */
  #drainPolling = false;
  /** When the socket last filled up, while polling it on macrotasks. */
  #drainStalledAt: number | undefined;
  /** The last stall outlasted DRAIN_POLL_MS: poll on a timer until the link proves fast. */
  #slowDrain = false;
  readonly #deadline: Deadline;
  /** The session deadline `#deadline` stands for, on `#clock`. */
  #timerAt: number | undefined;
  #ended: ConnectionCloseInfo | undefined;
  #closing: { code: number; reason: string; deadline: unknown } | undefined;
  #resolveClosed!: (info: ConnectionCloseInfo) => void;

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
    this.#deadlines = deadlinesOf(this.#clock);
    this.#maxQueuedBytes = init.maxQueuedBytes ?? MAX_QUEUED_BYTES;
    this.#hooks = init.hooks ?? {};
    this.#onPing = init.onPing;
    this.#onPong = init.onPong;
    this.#handler = init.handler;
    this.#remoteAddr = init.remoteAddr ?? { hostname: "", port: 0 };
    this.#handlerRemoteAddr = { transport: "tcp", ...this.#remoteAddr };
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
    this.#deadline = new Deadline(this.#flush);
    this.#socket.onMessage = (data) => this.#onMessage(data);
    this.#socket.onClose = (code, reason) => this.#end({ code, reason, ...abnormal(code, reason) });
    this.#socket.onDrain = () => this.#schedule();
    this.#schedule();
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
    return this.#inboundBytes + this.#heldBytes + this.#session.bufferedBytes +
      this.#socket.bufferedAmount;
  }

  /** Exchanges running now in both directions. */
  get inFlight(): number {
    return this.#outgoing.size + this.#incoming.size;
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
    this.#handler = handler;
    this.#hooks.onServe?.(handler);
    return this;
  }

  /**
   * Sends a request to the peer's handler: the standard `fetch` signature, bound, so
   * it can be passed anywhere a `fetch` goes. Relative URLs (`"/pets/1"`) are fine.
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
   *
   * @param input A URL (relative or absolute) or a `Request`.
   * @param init The usual `RequestInit`.
   * @returns The peer's response; its body streams as the peer produces it.
   */
  readonly fetch: FetchFunction = (input, init) => {
    return new Promise<Response>((resolve, reject) => {
      let parts: RequestParts;
      try {
        parts = requestParts(input, init);
      } catch (error) {
        return reject(error);
      }
      this.#send(parts, resolve, reject);
    });
  };

  /**
   * Sends a request exactly as given, for proxies: the target goes on the wire as it is
   * (`/a/../b//c?` is not resolved, re-encoded or trimmed: the peer's handler finds it in
   * `info.target`), the headers as listed, any method that is a token. Otherwise it is
   * {@linkcode fetch}: same response, errors and abort.
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
    return new Promise<Response>((resolve, reject) => {
      let parts: RequestParts;
      try {
        parts = forwardParts(request);
      } catch (error) {
        return reject(error);
      }
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
      const timeout = options.timeout ?? 5_000;
      this.#closing = {
        code,
        reason,
        deadline: this.#clock.setTimer(() => this.#closeSocket(code, reason), timeout),
      };
      this.#session.goAway(code, reason);
      this.#schedule();
      this.#closeIfDrained();
    }
    return this.closed.then(() => {});
  }

  /** Closes at once (`close({ timeout: 0 })`); for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close({ timeout: 0 });
  }

  // ---- fetch ---------------------------------------------------------------

  #send(
    parts: RequestParts,
    resolve: (response: Response) => void,
    reject: (error: unknown) => void,
  ): void {
    const { head, body, signal } = parts;
    if (signal?.aborted) return reject(abortReason(signal));
    if (this.#ended || this.#closing) return reject(this.#refusal(undefined));
    let streamId: number;
    try {
      streamId = this.#session.openStream(head, body === null);
    } catch (error) {
      return reject(this.#refusal(error));
    }
    let cleanup = noop;
    if (signal) {
      const onAbort = (): void => {
        this.#session.reset(streamId, ResetCode.Cancel, "Aborted by the caller");
        this.#failOutgoing(streamId, abortReason(signal));
        this.#schedule();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      cleanup = () => signal.removeEventListener("abort", onAbort);
    }
    const exchange: Outgoing = {
      resolve,
      reject,
      responded: false,
      body: undefined,
      head: head.method === "HEAD",
      target: head.url,
      cleanup,
      cancelPump: undefined,
    };
    this.#outgoing.set(streamId, exchange);
    if (body instanceof Uint8Array) {
      // Known bytes: queued at once, no stream to pump (the session splits and paces them).
      this.#session.sendData(streamId, body, true);
    } else if (body !== null) {
      exchange.cancelPump = this.#pump(streamId, body);
    }
    if (body === null || body instanceof Uint8Array) this.#sendWhole();
    else this.#schedule();
  }

  /**
   * Why a request cannot go: the connection ended or is closing, or the session refused
   * the stream (`error`, by its class).
   */
  #refusal(error: unknown): Error {
    if (this.#ended) {
      return new ConnectionClosedError(
        `Connection closed: ${this.#ended.code}${
          this.#ended.reason ? ` ${this.#ended.reason}` : ""
        }`,
        this.#ended.code,
      );
    }
    if (this.#closing || error instanceof GoingAwayError) {
      return new ExchangeRefusedError("Connection is going away: no new exchanges");
    }
    if (error instanceof StreamLimitError) {
      return new ExchangeRefusedError(
        `Too many concurrent exchanges: the peer allows ${error.limit}`,
      );
    }
    if (error instanceof HeaderSizeError) return new ExchangeTooLargeError(error.message);
    // The session is not open yet, or no longer: its handshake did not complete.
    if (error instanceof TypeError) {
      return new ConnectionClosedError("Connection is not open", 1006);
    }
    return new ExchangeRefusedError(String((error as Error).message));
  }

  /** @param arrived The whole body if it has arrived (`null`: none); `undefined` if it streams in. */
  #onResponse(streamId: number, head: ResponseHead, arrived: BodyBytes | null | undefined): void {
    const exchange = this.#outgoing.get(streamId);
    if (!exchange) return;
    exchange.responded = true;
    const noBody = arrived === null || exchange.head || NULL_BODY_STATUS.has(head.status);
    if (!noBody && arrived === undefined) {
      exchange.body = new InboundBody(
        (bytes) => this.#consume(streamId, bytes),
        () => {
          this.#session.reset(streamId, ResetCode.Cancel, "Response body cancelled");
          this.#finishOutgoing(streamId);
          this.#schedule();
        },
        this.#account,
      );
    }
    let response: Response;
    try {
      const body = noBody ? null : exchange.body?.stream ?? arrived;
      // The init's webidl conversion costs microseconds on Deno; a plain 200 needs none.
      response = head.status === 200 && head.statusText === ""
        ? new ExchangeResponse(body, exchange.target)
        : new ExchangeResponse(body, exchange.target, {
          status: head.status,
          statusText: head.statusText,
        });
      if (head.headers.length > 0) appendHeaders(response.headers, head.headers);
    } catch (error) {
      this.#session.reset(streamId, ResetCode.StreamError, "Invalid response head");
      this.#failOutgoing(
        streamId,
        new ExchangeResetError(
          `Invalid response head: ${(error as Error).message}`,
          ResetCode.StreamError,
        ),
      );
      this.#schedule();
      return;
    }
    if (exchange.body) droppedResponses.register(response, exchange.body);
    else this.#finishOutgoing(streamId);
    const resolve = exchange.resolve;
    // The fetch promise holds the response: let go of it, so that a caller who drops the
    // response lets it be collected (see droppedResponses).
    exchange.resolve = noop;
    exchange.reject = noop;
    resolve(response);
  }

  #finishOutgoing(streamId: number): void {
    const exchange = this.#outgoing.get(streamId);
    if (!exchange) return;
    this.#outgoing.delete(streamId);
    exchange.cleanup();
    this.#closeIfDrained();
  }

  #failOutgoing(streamId: number, error: unknown): void {
    const exchange = this.#outgoing.get(streamId);
    if (!exchange) return;
    this.#finishOutgoing(streamId);
    exchange.cancelPump?.(error);
    if (exchange.responded) exchange.body?.error(error);
    else exchange.reject(error);
    this.#wakeWriter(streamId);
  }

  // ---- serving -------------------------------------------------------------

  /** @param arrived The whole body if it has arrived (`null`: none); `undefined` if it streams in. */
  #onRequest(streamId: number, head: RequestHead, arrived: BodyBytes | null | undefined): void {
    const controller = new AbortController();
    const body = arrived !== undefined ? undefined : new InboundBody(
      (bytes) => this.#consume(streamId, bytes),
      () => {
        // The handler gave up on the body; the response may still follow.
      },
      this.#account,
    );
    const exchange: Incoming = {
      controller,
      body,
      cancelPump: undefined,
      completed: undefined,
      settle: undefined,
      ended: false,
      held: undefined,
    };
    this.#incoming.set(streamId, exchange);
    let requestBody: ReadableStream<Uint8Array> | BodyBytes | null = body?.stream ?? arrived ??
      null;
    // A `Request` refuses a GET or HEAD body: the handler finds one in `info.body`.
    let bodyless: ReadableStream<Uint8Array> | null = null;
    if (requestBody !== null && BODYLESS_REQUESTS.has(head.method.toUpperCase())) {
      bodyless = requestBody instanceof ReadableStream ? requestBody : streamOf(requestBody);
      requestBody = null;
    }
    const info = new ExchangeInfo(this, this.#handlerRemoteAddr, head.url, exchange, bodyless);
    let request: Request;
    try {
      request = new Request(handlerUrl(head.url), {
        method: head.method,
        body: requestBody,
        signal: controller.signal,
        // @ts-ignore: `duplex` is required for streaming bodies but missing from some lib.dom versions.
        duplex: "half",
      });
      // Bun makes the Headers object on first access: a request without headers goes without.
      if (head.headers.length > 0) appendHeaders(request.headers, head.headers);
    } catch (error) {
      this.#logger.debug("swaggersocket: rejecting malformed request", error);
      this.#respond(streamId, head.method, textResponse(400, "Bad Request"));
      return;
    }
    const handler = this.#handler;
    if (!handler) {
      this.#respond(
        streamId,
        head.method,
        textResponse(501, "No handler is serving this connection"),
      );
      return;
    }
    let result: Response | Promise<Response>;
    try {
      result = handler(request, info);
    } catch (error) {
      this.#handlerFailed(streamId, head.method, error);
      return;
    }
    if (result instanceof Response) {
      this.#respond(streamId, head.method, result);
    } else {
      Promise.resolve(result).then(
        (response) => this.#respond(streamId, head.method, response),
        (error) => this.#handlerFailed(streamId, head.method, error),
      );
    }
  }

  #handlerFailed(streamId: number, method: string, error: unknown): void {
    const exchange = this.#incoming.get(streamId);
    if (exchange && !exchange.controller.signal.aborted) {
      this.#logger.error("swaggersocket: handler failed", error);
    }
    this.#respond(streamId, method, textResponse(500, "Internal Server Error"));
  }

  #respond(streamId: number, method: string, response: unknown): void {
    const exchange = this.#incoming.get(streamId);
    if (!exchange || !this.#session.hasStream(streamId)) {
      // The caller went away; release whatever the handler produced.
      if (response instanceof Response) response.body?.cancel().catch(() => {});
      return;
    }
    if (!(response instanceof Response)) {
      this.#logger.error("swaggersocket: handler returned a non-Response value", response);
      response = textResponse(500, "Internal Server Error");
    }
    const res = response as Response;
    const body = method === "HEAD" || NULL_BODY_STATUS.has(res.status) ? null : res.body;
    if (body !== res.body) res.body?.cancel().catch(() => {});
    const head = {
      status: res.status,
      statusText: res.statusText,
      headers: headerList(res.headers),
    };
    if (body === null) {
      if (this.#sendResponseHead(streamId, head, true)) {
        this.#responseComplete(exchange);
        this.#sendWhole();
      } else this.#schedule();
      return;
    }
    // Held until the body ends, grows large or the flush comes (`#pushBody`, `#flush`).
    exchange.held = { head, chunks: [], bytes: 0 };
    this.#heldResponses++;
    exchange.cancelPump = this.#pump(streamId, body);
    this.#schedule();
  }

  /**
   * Queues a response head. If the session refuses it (too large, most often), resets the
   * stream, ends the exchange and stops its body.
   *
   * @returns Whether the head was queued.
   */
  #sendResponseHead(streamId: number, head: ResponseHead, end: boolean): boolean {
    try {
      this.#session.sendHeaders(streamId, head, end);
      return true;
    } catch (error) {
      const tooLarge = error instanceof HeaderSizeError;
      this.#logger.error("swaggersocket: cannot send response", error);
      this.#session.reset(
        streamId,
        tooLarge ? ResetCode.TooLarge : ResetCode.Internal,
        tooLarge ? "Response headers too large" : "Cannot send response",
      );
      const cancelPump = this.#incoming.get(streamId)?.cancelPump;
      this.#finishIncoming(streamId);
      cancelPump?.(error);
      this.#schedule();
      return false;
    }
  }

  /**
   * Hands a held response to the session: its head, then the chunks read so far.
   *
   * @returns Whether the stream can take more now (as `Session.sendData` says).
   */
  #releaseResponse(streamId: number, end: boolean): boolean {
    const exchange = this.#incoming.get(streamId);
    const held = exchange?.held;
    if (!exchange || !held) return true;
    this.#dropHeld(exchange);
    if (!this.#sendResponseHead(streamId, held.head, false)) return false;
    let more = true;
    const last = held.chunks.length - 1;
    for (let i = 0; i <= last; i++) {
      more = this.#session.sendData(streamId, held.chunks[i], end && i === last);
    }
    if (end && last < 0) more = this.#session.sendData(streamId, EMPTY, true);
    return more;
  }

  #dropHeld(exchange: Incoming): void {
    if (!exchange.held) return;
    this.#heldBytes -= exchange.held.bytes;
    exchange.held = undefined;
    this.#heldResponses--;
  }

  /**
   * A response is complete: a request body its handler never started reading is drained,
   * or it would hold the connection's credit for good (and stall the peer's upload).
   */
  #responseComplete(exchange: Incoming | undefined): void {
    exchange?.body?.discardUnread("The request body was not read before the response was complete");
  }

  /** Body bytes from a pump: held with their response head, or queued on the stream. */
  #pushBody(streamId: number, chunk: Uint8Array, end: boolean): boolean {
    const exchange = this.#incoming.get(streamId);
    if (end) this.#responseComplete(exchange);
    const held = exchange?.held;
    if (!held) return this.#session.sendData(streamId, chunk, end);
    if (chunk.byteLength > 0) {
      held.chunks.push(chunk);
      held.bytes += chunk.byteLength;
      this.#heldBytes += chunk.byteLength;
    }
    if (end || held.bytes >= HOLD_RESPONSE_BYTES) return this.#releaseResponse(streamId, end);
    return true;
  }

  #finishIncoming(streamId: number): void {
    const exchange = this.#incoming.get(streamId);
    if (!exchange) return;
    this.#incoming.delete(streamId);
    this.#dropHeld(exchange);
    exchange.ended = true;
    exchange.settle?.();
    this.#closeIfDrained();
  }

  #failIncoming(streamId: number, error: unknown): void {
    const exchange = this.#incoming.get(streamId);
    if (!exchange) return;
    this.#incoming.delete(streamId);
    this.#dropHeld(exchange);
    exchange.ended = true;
    exchange.settle?.();
    exchange.controller.abort(error);
    exchange.body?.error(error);
    exchange.cancelPump?.(error);
    this.#wakeWriter(streamId);
    this.#closeIfDrained();
  }

  // ---- bodies --------------------------------------------------------------

  /** Streams `body` onto a stream; returns a function that stops it. */
  #pump(streamId: number, body: ReadableStream<unknown>): (reason: unknown) => void {
    let reader: ReadableStreamDefaultReader<unknown> | undefined;
    let stopped = false;
    const run = async (): Promise<void> => {
      try {
        // Inside the try: a body that is locked or already used fails this exchange only.
        reader = body.getReader();
        for (;;) {
          // A peer that does not read makes output wait; read no more from the application
          // while the connection's share of it is full (but see MIN_STREAM_QUEUED_BYTES).
          while (this.#mustWait(streamId) && !this.#ended && !stopped) {
            await new Promise<void>((resolve) => (this.#queueWaiters ??= []).push(resolve));
          }
          const { done, value } = await reader.read();
          if (stopped || !this.#session.hasStream(streamId)) {
            if (!done) reader.cancel().catch(() => {});
            return;
          }
          if (done) {
            this.#pushBody(streamId, EMPTY, true);
            this.#sendWhole();
            return;
          }
          const more = this.#pushBody(streamId, toBytes(value), false);
          this.#schedule();
          if (stopped) return; // The session refused a held head, which cancelled this pump.
          if (!more) {
            await new Promise<void>((resolve) => this.#writableWaiters.set(streamId, resolve));
          }
        }
      } catch (error) {
        if (stopped || !this.#session.hasStream(streamId)) return;
        this.#logger.warn("swaggersocket: body stream failed", error);
        // A held response still goes first: the caller gets its Response, then the error.
        this.#releaseResponse(streamId, false);
        this.#session.reset(streamId, ResetCode.Internal, "Body stream failed");
        const outgoing = this.#outgoing.get(streamId);
        if (outgoing) this.#failOutgoing(streamId, error);
        else this.#finishIncoming(streamId);
        this.#schedule();
      }
    };
    run();
    return (reason) => {
      if (stopped) return;
      stopped = true;
      reader?.cancel(reason).catch(() => {});
    };
  }

  /** Output waiting to be sent: what pumps stop reading at (`#maxQueuedBytes`). */
  get #queuedBytes(): number {
    return this.#session.bufferedBytes + this.#heldBytes;
  }

  /** Whether a stream's body must wait before its next chunk is read. */
  #mustWait(streamId: number): boolean {
    if (this.#queuedBytes < this.#maxQueuedBytes) return false;
    const held = this.#incoming.get(streamId)?.held?.bytes ?? 0;
    return this.#session.queuedBytes(streamId) + held >= MIN_STREAM_QUEUED_BYTES;
  }

  /** Output went out or was dropped: the waiting pumps look again. */
  #wakeQueueWaiters(): void {
    const waiters = this.#queueWaiters;
    if (waiters === undefined) return;
    this.#queueWaiters = undefined;
    for (const wake of waiters) wake();
  }

  get #account(): (delta: number) => void {
    return this.#accountFn ??= (delta) => {
      this.#inboundBytes += delta;
    };
  }

  #wakeWriter(streamId: number): void {
    const wake = this.#writableWaiters.get(streamId);
    if (wake) {
      this.#writableWaiters.delete(streamId);
      wake();
    }
  }

  #consume(streamId: number, bytes: number): void {
    this.#session.consume(streamId, bytes);
    this.#schedule();
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
    this.#session.handleMessage(data, this.#clock.now());
    this.#processEvents();
    // A reset or a finished stream may have freed queued output.
    this.#wakeQueueWaiters();
    // The macrotask flush costs a few µs to schedule (2.6 µs on Deno): a message that left
    // nothing for it (a response whose caller runs next, say) goes without.
    if (
      this.#session.readyFrames > 0 || this.#heldResponses > 0 ||
      this.#session.pollTimeout() !== this.#timerAt
    ) {
      this.#schedule();
    }
  }

  #schedule(): void {
    if (this.#ended) return;
    if (this.#session.readyFrames >= BATCH_FRAMES) this.#transmit();
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    nextTask(this.#flush);
  }

  /**
   * Sends what is queued once the current microtasks have run, ahead of the macrotask
   * flush: called when a request or response has been queued whole. A lone exchange then
   * skips a trip through the event loop on each end (about 5 % of a sequential exchange);
   * exchanges that complete in the same microtasks still share one message.
   */
  #sendSoon(): void {
    if (this.#sendSoonScheduled || this.#ended) return;
    this.#sendSoonScheduled = true;
    queueMicrotask(this.#sendQueued);
  }

  /**
   * A whole request or response was queued: it leaves with `#sendSoon`, and needs no
   * macrotask flush of its own (a large batch still leaves early, as `#schedule` sends it).
   */
  #sendWhole(): void {
    if (this.#ended) return;
    if (this.#session.readyFrames >= BATCH_FRAMES) this.#transmit();
    this.#sendSoon();
  }

  #sendQueued = (): void => {
    this.#sendSoonScheduled = false;
    if (this.#ended) return;
    this.#transmit();
    // Sending a stream's last frame finishes it.
    this.#processEvents();
  };

  #flush = (): void => {
    this.#flushScheduled = false;
    if (this.#ended) return;
    const now = this.#clock.now();
    const deadline = this.#session.pollTimeout();
    if (deadline !== undefined && deadline <= now) this.#session.handleTimeout(now);
    // A body that did not end within the macrotask streams: its head goes now.
    if (this.#heldResponses > 0) {
      for (const [streamId, exchange] of this.#incoming) {
        if (exchange.held) this.#releaseResponse(streamId, false);
      }
    }
    this.#transmit();
    this.#processEvents();
    this.#armTimer();
  };

  #transmit(): void {
    if (this.#drainTimer !== undefined || this.#drainPolling) return;
    const buffered = this.#socket.bufferedAmount;
    if (buffered < SOCKET_HIGH_WATER) {
      // A stall ended: one that ended while polling, or a timer that found the socket empty,
      // says the link is fast again.
      if (this.#drainStalledAt !== undefined || buffered === 0) this.#slowDrain = false;
      this.#drainStalledAt = undefined;
    }
    while (this.#socket.bufferedAmount < SOCKET_HIGH_WATER) {
      const message = this.#session.pollTransmit(
        sendScratch ??= new Uint8Array(SEND_SCRATCH_BYTES),
      );
      if (!message) {
        this.#wakeQueueWaiters();
        return;
      }
      try {
        this.#socket.send(message);
      } catch (error) {
        this.#end({ code: 1006, reason: "Send failed", error: asError(error) });
        return;
      }
    }
    this.#wakeQueueWaiters();
    // The socket is full: wait for it to drain before handing it more.
    if (!this.#socket.signalsDrain) {
      // A fast link drains the buffer in about a millisecond, less than a timer tick (1–2 ms):
      // poll on the next macrotask for up to DRAIN_POLL_MS of a stall, then on a timer.
      const now = this.#clock.now();
      this.#drainStalledAt ??= now;
      if (!this.#slowDrain && now - this.#drainStalledAt < DRAIN_POLL_MS) {
        this.#drainPolling = true;
        nextTask(this.#drainPoll);
        return;
      }
      this.#slowDrain = true;
      this.#drainStalledAt = undefined;
      this.#drainTimer = this.#clock.setTimer(() => {
        this.#drainTimer = undefined;
        this.#flush();
      }, 1);
    }
  }

  #drainPoll = (): void => {
    this.#drainPolling = false;
    this.#flush();
  };

  #armTimer(): void {
    if (this.#ended) return;
    const at = this.#session.pollTimeout();
    if (at === this.#timerAt && (at === undefined || this.#deadline.pending)) return;
    this.#timerAt = at;
    this.#deadlines.set(this.#deadline, at);
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
        this.connectedAt = new Date();
        this.#hooks.onOpen?.(this, event.welcome);
        return;
      case "request":
        this.#onRequest(event.streamId, event.head, this.#arrived(event));
        return;
      case "response":
        this.#onResponse(event.streamId, event.head, this.#arrived(event));
        return;
      case "data":
        this.#onData(event.streamId, event.local, event.chunk, event.end, event.retained);
        return;
      case "reset":
        this.#onReset(event.streamId, event.local, event.code, event.reason, event.byPeer);
        return;
      case "writable":
        this.#wakeWriter(event.streamId);
        return;
      case "finished":
        if (event.local) this.#finishOutgoing(event.streamId);
        else this.#finishIncoming(event.streamId);
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
        this.#schedule();
      },
      refuse: (code, reason) => {
        if (answered || this.#ended) return;
        answered = true;
        session.refuse(code, reason);
        this.#processEvents();
      },
    });
  }

  #onData(
    streamId: number,
    local: boolean,
    chunk: Uint8Array,
    end: boolean,
    retained: number,
  ): void {
    const body = local ? this.#outgoing.get(streamId)?.body : this.#incoming.get(streamId)?.body;
    if (!body) {
      // Nobody reads it (a HEAD or null-body response); give the credit straight back.
      this.#session.consume(streamId, chunk.byteLength);
      if (end) this.#finishOutgoing(streamId);
      return;
    }
    body.push(chunk, retained);
    if (end) {
      body.end();
      this.#finishOutgoing(streamId);
    }
  }

  #onReset(streamId: number, local: boolean, code: number, reason: string, byPeer: boolean): void {
    if (local) {
      const message = `${byPeer ? "Peer reset the exchange" : "Exchange reset"}: ${reason}`;
      const error = code === ResetCode.Refused
        ? new ExchangeRefusedError(message)
        : code === ResetCode.TooLarge
        ? new ExchangeTooLargeError(message)
        : new ExchangeResetError(message, code);
      this.#failOutgoing(streamId, error);
    } else {
      this.#failIncoming(
        streamId,
        new DOMException(`The peer cancelled the request: ${reason}`, "AbortError"),
      );
    }
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
    if (!draining || this.#outgoing.size > 0 || this.#incoming.size > 0) return;
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
    try {
      // One last message carries the queued control frames (a GOAWAY, a RESET); body data
      // beyond it would only be cut off by the close.
      const message = this.#session.pollTransmit();
      if (message) this.#socket.send(message);
    } catch {
      // The socket is already gone; closing below still ends the connection.
    }
    this.#session.close();
    const info: ConnectionCloseInfo = {
      code,
      reason: fitted,
      ...(error ? { error } : abnormal(code, fitted)),
    };
    // Bun's ServerWebSocket reports the close synchronously from close(): end with this end's
    // own code, reason and error (a ProtocolError), not the generic error onClose would make.
    // (Ending inside that callback matters on Bun: ending after it delays server.stop() by 1 s.)
    this.#socket.onClose = () => this.#end(info);
    try {
      this.#socket.close(code, fitted);
    } catch (cause) {
      this.#logger.debug("swaggersocket: close failed", cause);
    }
    this.#end(info);
  }

  #end(info: ConnectionCloseInfo): void {
    if (this.#ended) return;
    this.#ended = info;
    this.#session.close();
    this.#deadlines.set(this.#deadline, undefined);
    if (this.#drainTimer !== undefined) this.#clock.clearTimer(this.#drainTimer);
    if (this.#closing) this.#clock.clearTimer(this.#closing.deadline);
    this.#drainTimer = undefined;
    const error = new ConnectionClosedError(
      `Connection closed: ${info.code}${info.reason ? ` ${info.reason}` : ""}`,
      info.code,
      info.error ? { cause: info.error } : undefined,
    );
    for (const streamId of [...this.#outgoing.keys()]) this.#failOutgoing(streamId, error);
    for (const streamId of [...this.#incoming.keys()]) this.#failIncoming(streamId, error);
    for (const wake of this.#writableWaiters.values()) wake();
    this.#writableWaiters.clear();
    this.#wakeQueueWaiters();
    this.#hooks.onEnd?.(this, info);
    this.#resolveClosed(info);
  }
}

function abnormal(code: number, reason: string): { error?: Error } {
  if (code === CloseCode.Normal || code === CloseCode.GoingAway) return {};
  return {
    error: new ConnectionClosedError(`Connection lost: ${code}${reason ? ` ${reason}` : ""}`, code),
  };
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}

function textResponse(status: number, text: string): Response {
  return new Response(text, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

function toBytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return encoder.encode(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  throw new TypeError("Body chunks must be bytes or strings");
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
