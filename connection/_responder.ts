/**
 * The responder's side of exchanges: a peer's request becomes a `Request` for the handler,
 * and the handler's `Response` goes back on the same stream.
 *
 * A response whose body is still being read is *held*, head and all, until the body ends,
 * `HOLD_RESPONSE_BYTES` have been read, or the macrotask flush comes (`releaseHeld`): a body
 * already in memory then leaves in the same message as its head, and the caller gets it
 * whole, as bytes rather than a stream. A body that ends while held is sent with its
 * `Content-Length` (see `_relayed.ts` for the responses that keep their framing).
 *
 * @module
 */

import { ResetCode } from "../protocol/close_codes.ts";
import { HeaderSizeError } from "../protocol/errors.ts";
import type { RequestHead, ResponseHead } from "../protocol/payload.ts";
import { textBytes } from "../protocol/_small_bytes.ts";
import type { BodyPump, BodyPumps, BodySink } from "./_body_pump.ts";
import { Cancel } from "./_cancel.ts";
import type { ConnectionContext } from "./_context.ts";
import { appendHeaders, headerList } from "./_header_list.ts";
import { type BodyBytes, InboundBody } from "./_inbound_body.ts";
import { Urgency } from "./_output.ts";
import { type OutgoingParts, type PartsHandler, partsOf } from "./_parts_handler.ts";
import { handlerUrl } from "./_request_parts.ts";
import { isRelayedWithoutLength } from "./_relayed.ts";
import { isWhole, wholeBytes } from "./_whole.ts";

interface Incoming {
  /**
   * What aborts the handler's `request.signal`: its controller, or the request itself; or
   * a parts handler's `Cancel`.
   */
  abort: AbortController | Request | Cancel | undefined;
  body: InboundBody | undefined;
  pump: BodyPump | undefined;
  /** Made only if the handler reads `info.completed`. */
  completed: Promise<void> | undefined;
  settle: (() => void) | undefined;
  ended: boolean;
  /** The response while it is held back with the first chunks of its body (see `respond`). */
  held: HeldResponse | undefined;
  /** `ConnectionContext.messagesIn` when the request came. */
  since: number;
}

/** A response head and the body chunks read so far, not yet handed to the session. */
interface HeldResponse {
  head: ResponseHead;
  chunks: Uint8Array[];
  bytes: number;
  /** Whether a body that ends while held gets a `content-length` (see `_relayed.ts`). */
  sayLength: boolean;
}

/** The peer's address as a handler sees it (`HandlerInfo.remoteAddr`). */
export type RemoteAddr = {
  readonly transport: "tcp";
  readonly hostname: string;
  readonly port: number;
};

/**
 * A handler as the responder calls it: `Handler`, with the connection's type left open
 * (`Connection` is defined above this file, which must not import it).
 */
export type ServeFunction<C> = (
  request: Request,
  info: ExchangeInfo<C>,
) => Response | Promise<Response>;

/**
 * A response body is held with its head until this many bytes have been read (see the
 * module doc).
 */
const HOLD_RESPONSE_BYTES = 64 * 1024;
const NULL_BODY_STATUS = new Set([204, 205, 304]);
/** Every responder's exchanges until its first: never written. */
const NO_EXCHANGES: ReadonlyMap<number, Incoming> = new Map();
/** Methods whose `Request` cannot have a body (in any case: `Request` normalises them). */
const BODYLESS_REQUESTS = new Set(["GET", "HEAD"]);
const EMPTY = new Uint8Array(0);

/**
 * The handler's second argument (`HandlerInfo`). A class rather than an object literal with
 * a getter: Deno builds such a literal in ~0.5 µs, a class instance in ~0.01 µs.
 */
export class ExchangeInfo<C> {
  readonly #exchange: Incoming;

  constructor(
    readonly connection: C,
    readonly remoteAddr: RemoteAddr,
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

/** The exchanges the peer started, by stream id. */
export class Responder<C> implements BodySink {
  /** Serves the peer's requests; none answers 501. */
  handler: ServeFunction<C> | undefined;
  readonly #context: ConnectionContext;
  readonly #pumps: BodyPumps;
  readonly #connection: C;
  readonly #remoteAddr: RemoteAddr;
  /** None: every body streams. */
  readonly #takeBodyInMemory: ((response: Response) => Uint8Array | string | undefined) | undefined;
  /** None: every handler's request gets a controller. */
  readonly #abortRequest: ((request: Request, reason: unknown) => void) | undefined;
  /** By stream id: the shared empty map until the first exchange (idle connections). */
  #incoming: Map<number, Incoming> = NO_EXCHANGES as Map<number, Incoming>;

  /**
   * @param context The connection's shared state.
   * @param pumps Where response bodies are read.
   * @param connection What handlers get as `info.connection`.
   * @param remoteAddr What handlers get as `info.remoteAddr`.
   * @param takeBodyInMemory Takes a response's body if it is in memory (see `ConnectionInit`).
   * @param abortRequest Aborts a request made without a signal (see `ConnectionInit`).
   */
  constructor(
    context: ConnectionContext,
    pumps: BodyPumps,
    connection: C,
    remoteAddr: RemoteAddr,
    takeBodyInMemory?: (response: Response) => Uint8Array | string | undefined,
    abortRequest?: (request: Request, reason: unknown) => void,
  ) {
    this.#context = context;
    this.#pumps = pumps;
    this.#connection = connection;
    this.#remoteAddr = remoteAddr;
    this.#takeBodyInMemory = takeBodyInMemory;
    this.#abortRequest = abortRequest;
  }

  /** Exchanges whose response is not complete yet. */
  get size(): number {
    return this.#incoming.size;
  }

  /** The bodies arriving on this side's exchanges, for the stalled-reader watch. */
  *inboundBodies(): Generator<InboundBody> {
    for (const exchange of this.#incoming.values()) if (exchange.body) yield exchange.body;
  }

  /** @param arrived The whole body if it has arrived (`null`: none); `undefined` if it streams in. */
  onRequest(streamId: number, head: RequestHead, arrived: BodyBytes | null | undefined): void {
    const context = this.#context;
    const handler = this.handler;
    const parts = handler && partsOf(handler);
    const controller = this.#abortRequest === undefined && !parts
      ? new AbortController()
      : undefined;
    const body = arrived !== undefined ? undefined : new InboundBody(
      (bytes) => context.consume(streamId, bytes),
      () => {
        // The handler gave up on the body; the response may still follow.
      },
      context.account,
    );
    const exchange: Incoming = {
      abort: controller,
      body,
      pump: undefined,
      completed: undefined,
      settle: undefined,
      ended: false,
      held: undefined,
      since: context.messagesIn,
    };
    context.requestMessage = context.messagesIn;
    if (this.#incoming === NO_EXCHANGES) this.#incoming = new Map();
    this.#incoming.set(streamId, exchange);
    let requestBody: ReadableStream<Uint8Array> | BodyBytes | null = body?.stream ?? arrived ??
      null;
    if (parts) {
      this.#serveParts(streamId, exchange, head, requestBody, parts);
      return;
    }
    // A `Request` refuses a GET or HEAD body: the handler finds one in `info.body`.
    let bodyless: ReadableStream<Uint8Array> | null = null;
    if (requestBody !== null && BODYLESS_REQUESTS.has(head.method.toUpperCase())) {
      bodyless = requestBody instanceof ReadableStream ? requestBody : streamOf(requestBody);
      requestBody = null;
    }
    const info = new ExchangeInfo(this.#connection, this.#remoteAddr, head.url, exchange, bodyless);
    let request: Request;
    try {
      request = new Request(handlerUrl(head.url), {
        method: head.method,
        body: requestBody,
        signal: controller?.signal,
        // @ts-ignore: `duplex` is required for streaming bodies but missing from some lib.dom versions.
        duplex: "half",
      });
      // Bun makes the Headers object on first access: a request without headers goes without.
      if (head.headers.length > 0) appendHeaders(request.headers, head.headers);
      exchange.abort ??= request;
    } catch (error) {
      context.logger.debug("swaggersocket: rejecting malformed request", error);
      this.#respond(streamId, head.method, textResponse(400, "Bad Request"));
      return;
    }
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

  /** A chunk of a request body arrived. */
  onData(streamId: number, chunk: Uint8Array, end: boolean, retained: number): void {
    const body = this.#incoming.get(streamId)?.body;
    if (!body) {
      // Nobody reads it; give the credit straight back.
      this.#context.session.consume(streamId, chunk.byteLength);
      return;
    }
    body.push(chunk, retained);
    if (end) body.end();
  }

  /** The flush came: every held response goes now, its body streaming after it. */
  releaseHeld(): void {
    for (const [streamId, exchange] of this.#incoming) {
      if (exchange.held) this.#release(streamId, false);
    }
  }

  /** The exchange is over: its response was sent in full. */
  finish(streamId: number): void {
    if (this.#end(streamId)) this.#context.exchangeEnded();
  }

  /** Ends the exchange with `error`: the handler's signal aborts, its bodies error. */
  fail(streamId: number, error: unknown): void {
    const exchange = this.#end(streamId);
    if (!exchange) return;
    const abort = exchange.abort;
    if (abort instanceof AbortController || abort instanceof Cancel) abort.abort(error);
    else if (abort !== undefined) this.#abortRequest?.(abort, error);
    exchange.body?.error(error);
    exchange.pump?.cancel(error);
    this.#pumps.wakeWriter(streamId);
    this.#context.exchangeEnded();
  }

  /** The connection ended: every exchange fails with `error`. */
  failAll(error: unknown): void {
    for (const streamId of [...this.#incoming.keys()]) this.fail(streamId, error);
  }

  /** Body bytes from a pump: held with their response head, or queued on the stream. */
  push(streamId: number, chunk: Uint8Array, end: boolean): boolean {
    const exchange = this.#incoming.get(streamId);
    if (end) responseComplete(exchange);
    const held = exchange?.held;
    if (!held) return this.#context.session.sendData(streamId, chunk, end);
    if (chunk.byteLength > 0) {
      held.chunks.push(chunk);
      held.bytes += chunk.byteLength;
      this.#context.heldBytes += chunk.byteLength;
    }
    if (end || held.bytes >= HOLD_RESPONSE_BYTES) return this.#release(streamId, end);
    return true;
  }

  /** How soon the end of the stream's response body leaves. */
  endUrgency(streamId: number): Urgency {
    const exchange = this.#incoming.get(streamId);
    return exchange ? this.#answerUrgency(exchange) : Urgency.Soon;
  }

  /** Bytes of the stream's response held back. */
  heldFor(streamId: number): number {
    return this.#incoming.get(streamId)?.held?.bytes ?? 0;
  }

  /** The response body failed: a held response still goes first, then the reset. */
  failed(streamId: number): void {
    // The caller gets its Response, then the error.
    this.#release(streamId, false);
    this.#context.session.reset(streamId, ResetCode.Internal, "Body stream failed");
    this.finish(streamId);
  }

  /** Serves a request with a handler's parts form: no `Request`, `Headers` or `Response`. */
  #serveParts(
    streamId: number,
    exchange: Incoming,
    head: RequestHead,
    body: ReadableStream<Uint8Array> | BodyBytes | null,
    parts: PartsHandler,
  ): void {
    const cancel = new Cancel();
    exchange.abort = cancel;
    const method = head.method;
    let answer: Promise<OutgoingParts>;
    try {
      answer = parts({
        method,
        target: head.url,
        headers: head.headers,
        body,
        cancel,
        remoteAddr: this.#remoteAddr.hostname,
      });
    } catch (error) {
      this.#handlerFailed(streamId, method, error);
      return;
    }
    answer.then(
      (out) => this.#respondParts(streamId, method, out),
      (error) => this.#handlerFailed(streamId, method, error),
    );
  }

  #respondParts(streamId: number, method: string, out: OutgoingParts): void {
    const exchange = this.#incoming.get(streamId);
    const body = out.body;
    if (!exchange || !this.#context.session.hasStream(streamId)) {
      if (body instanceof ReadableStream) body.cancel().catch(() => {});
      return;
    }
    const head = { status: out.status, statusText: out.statusText, headers: out.headers };
    const sayLength = !out.withoutLength;
    if (isBodyless(method, out.status)) {
      if (body instanceof ReadableStream) body.cancel().catch(() => {});
      this.#answer(streamId, exchange, head, null, sayLength);
    } else if (body instanceof Uint8Array) {
      this.#respondWhole(streamId, exchange, head, body, sayLength);
    } else {
      this.#answer(streamId, exchange, head, body, sayLength);
    }
  }

  #handlerFailed(streamId: number, method: string, error: unknown): void {
    const exchange = this.#incoming.get(streamId);
    // A failed exchange is gone: what its handler throws after the abort is not news.
    if (exchange) {
      this.#context.logger.error("swaggersocket: handler failed", error);
    }
    this.#respond(streamId, method, textResponse(500, "Internal Server Error"));
  }

  #respond(streamId: number, method: string, response: unknown): void {
    const context = this.#context;
    const exchange = this.#incoming.get(streamId);
    if (!exchange || !context.session.hasStream(streamId)) {
      // The caller went away; release whatever the handler produced.
      if (response instanceof Response) response.body?.cancel().catch(() => {});
      return;
    }
    if (!(response instanceof Response)) {
      context.logger.error("swaggersocket: handler returned a non-Response value", response);
      response = textResponse(500, "Internal Server Error");
    }
    const res = response as Response;
    const bodyless = isBodyless(method, res.status);
    const head = {
      status: res.status,
      statusText: res.statusText,
      headers: headerList(res.headers),
    };
    const sayLength = !isRelayedWithoutLength(res);
    if (!bodyless) {
      // The handler made it of a string or bytes: sent with its head at once, with no stream
      // made of them and no pump (reading `body` would make one). Taken after `res.headers`
      // was read above, as Deno's take needs (see `takeBodyOnDeno`).
      const inMemory = this.#takeBodyInMemory?.(res);
      if (inMemory !== undefined) {
        const bytes = typeof inMemory === "string" ? textBytes(inMemory) : inMemory;
        this.#respondWhole(streamId, exchange, head, bytes, sayLength);
        return;
      }
      if (isWhole(res)) {
        // Its bytes came with its head from a peer (a relayed answer): sent as they came, or
        // read at once.
        const bytes = wholeBytes(res);
        if (bytes !== undefined) {
          this.#respondWhole(streamId, exchange, head, bytes, sayLength);
          return;
        }
        res.arrayBuffer().then(
          (buffer) =>
            this.#respondWhole(streamId, exchange, head, new Uint8Array(buffer), sayLength),
          (error) => this.#unreadable(streamId, error),
        );
        return;
      }
    }
    let body: ReadableStream<Uint8Array> | null = null;
    if (!bodyless) body = res.body;
    else res.body?.cancel().catch(() => {});
    this.#answer(streamId, exchange, head, body, sayLength);
  }

  /**
   * Sends a response head, and the body after it: held with its head until the body ends,
   * grows large or the flush comes (`push`, `releaseHeld`).
   */
  #answer(
    streamId: number,
    exchange: Incoming,
    head: ResponseHead,
    body: ReadableStream<Uint8Array> | null,
    sayLength: boolean,
  ): void {
    const context = this.#context;
    if (body === null) {
      if (this.#sendHead(streamId, head, true)) {
        responseComplete(exchange);
        context.output.wake(this.#answerUrgency(exchange));
      } else context.output.wake();
      return;
    }
    exchange.held = { head, chunks: [], bytes: 0, sayLength };
    context.heldResponses++;
    exchange.pump = this.#pumps.pump(streamId, body, this);
    context.output.wake();
  }

  /**
   * How soon a complete response leaves. One the handler gave while its request's message
   * was handled leaves at once (`Soon`), with the others that message asked for; so does the
   * only exchange. One that came after later input, from other I/O (a tunnel's upstream
   * socket), waits for the flush while others are in flight: the flush gathers the answers
   * of a macrotask into one message (see `Urgency`).
   */
  #answerUrgency(exchange: Incoming): Urgency {
    return exchange.since === this.#context.messagesIn || this.#incoming.size <= 1
      ? Urgency.Soon
      : Urgency.Flush;
  }

  /** Sends a response whose body was all in memory: head and body together, length said. */
  #respondWhole(
    streamId: number,
    exchange: Incoming,
    head: ResponseHead,
    bytes: Uint8Array,
    sayLength: boolean,
  ): void {
    const context = this.#context;
    // The caller may have gone while the bytes were read.
    if (this.#incoming.get(streamId) !== exchange || !context.session.hasStream(streamId)) return;
    responseComplete(exchange);
    if (sayLength) withLength(head.headers, bytes.byteLength);
    const empty = bytes.byteLength === 0;
    if (!this.#sendHead(streamId, head, empty)) return;
    if (!empty) context.session.sendData(streamId, bytes, true);
    context.output.wake(this.#answerUrgency(exchange));
  }

  /** A response's body could not be read (it was read already): the stream is reset. */
  #unreadable(streamId: number, error: unknown): void {
    if (!this.#incoming.has(streamId)) return;
    this.#context.logger.error("swaggersocket: cannot read the response body", error);
    this.#context.session.reset(streamId, ResetCode.Internal, "Body stream failed");
    this.finish(streamId);
    this.#context.output.wake();
  }

  /**
   * Queues a response head. If the session refuses it (too large, most often), resets the
   * stream, ends the exchange and stops its body.
   *
   * @returns Whether the head was queued.
   */
  #sendHead(streamId: number, head: ResponseHead, end: boolean): boolean {
    const context = this.#context;
    try {
      context.session.sendHeaders(streamId, head, end);
      return true;
    } catch (error) {
      const tooLarge = error instanceof HeaderSizeError;
      context.logger.error("swaggersocket: cannot send response", error);
      context.session.reset(
        streamId,
        tooLarge ? ResetCode.TooLarge : ResetCode.Internal,
        tooLarge ? "Response headers too large" : "Cannot send response",
      );
      const pump = this.#incoming.get(streamId)?.pump;
      this.finish(streamId);
      pump?.cancel(error);
      context.output.wake();
      return false;
    }
  }

  /**
   * Hands a held response to the session: its head, then the chunks read so far.
   *
   * @returns Whether the stream can take more now (as `Session.sendData` says).
   */
  #release(streamId: number, end: boolean): boolean {
    const exchange = this.#incoming.get(streamId);
    const held = exchange?.held;
    if (!exchange || !held) return true;
    this.#dropHeld(exchange);
    // The whole body is here: say its length, as an HTTP server would, so that a gateway on
    // the other end answers with a length rather than chunked.
    if (end && held.sayLength) withLength(held.head.headers, held.bytes);
    if (!this.#sendHead(streamId, held.head, false)) return false;
    const session = this.#context.session;
    let more = true;
    const last = held.chunks.length - 1;
    for (let i = 0; i <= last; i++) {
      more = session.sendData(streamId, held.chunks[i], end && i === last);
    }
    if (end && last < 0) more = session.sendData(streamId, EMPTY, true);
    return more;
  }

  /** Forgets an exchange and settles its `info.completed`; returns it, if it was there. */
  #end(streamId: number): Incoming | undefined {
    const exchange = this.#incoming.get(streamId);
    if (!exchange) return undefined;
    this.#incoming.delete(streamId);
    this.#dropHeld(exchange);
    exchange.ended = true;
    exchange.settle?.();
    return exchange;
  }

  #dropHeld(exchange: Incoming): void {
    if (!exchange.held) return;
    this.#context.heldBytes -= exchange.held.bytes;
    exchange.held = undefined;
    this.#context.heldResponses--;
  }
}

/**
 * A response is complete: a request body its handler never started reading is drained,
 * or it would hold the connection's credit for good (and stall the peer's upload).
 */
function responseComplete(exchange: Incoming | undefined): void {
  exchange?.body?.discardUnread("The request body was not read before the response was complete");
}

/** Whether an answer to `method` with `status` carries no body, whatever it was given. */
function isBodyless(method: string, status: number): boolean {
  return method === "HEAD" || NULL_BODY_STATUS.has(status);
}

/** Bytes that arrived whole, as a stream. */
function streamOf(bytes: BodyBytes): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(bytes as Uint8Array);
      controller.close();
    },
  });
}

function textResponse(status: number, text: string): Response {
  return new Response(text, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

/** Adds `content-length` to a complete response's headers, unless it has a length or framing. */
function withLength(headers: [string, string][], bytes: number): void {
  for (const [name] of headers) {
    const lower = name.toLowerCase();
    if (lower === "content-length" || lower === "transfer-encoding") return;
  }
  headers.push(["content-length", String(bytes)]);
}
