/**
 * The caller's side of exchanges: `Connection.fetch()` and `forward()` open a stream with
 * the request, pump its body, and settle with the peer's `Response` (or an error) when the
 * response head arrives; the response body then streams in, unless it came whole with its
 * head, when the caller gets it as bytes.
 *
 * @module
 */

import { Cancel } from "./_cancel.ts";
import {
  ConnectionClosedError,
  ExchangeRefusedError,
  ExchangeResetError,
  ExchangeTooLargeError,
} from "../errors.ts";
import { ResetCode } from "../protocol/close_codes.ts";
import { GoingAwayError, HeaderSizeError, StreamLimitError } from "../protocol/errors.ts";
import type { ResponseHead } from "../protocol/payload.ts";
import type { BodyPump, BodyPumps, BodySink } from "./_body_pump.ts";
import type { ConnectionContext } from "./_context.ts";
import { type AnswerParts, checkedHeaders } from "./_answer_parts.ts";
import { appendHeaders } from "./_header_list.ts";
import { type BodyBytes, InboundBody } from "./_inbound_body.ts";
import { type RequestParts, targetUrl } from "./_request_parts.ts";
import { Urgency } from "./_output.ts";
import { markWhole } from "./_whole.ts";

interface Outgoing {
  resolve: (answer: Response | AnswerParts) => void;
  reject: (error: unknown) => void;
  responded: boolean;
  body: InboundBody | undefined;
  head: boolean;
  /** The request's URL as the target went on the wire (see `ExchangeResponse.url`). */
  target: string;
  cleanup: () => void;
  pump: BodyPump | undefined;
  /** Answered as parts, with no `Response` made (`RequestParts.inParts`). */
  inParts: boolean;
}

const NULL_BODY_STATUS = new Set([204, 205, 304]);
/** Every caller's exchanges until its first: never written. */
const NO_EXCHANGES: ReadonlyMap<number, Outgoing> = new Map();
const noop = (): void => {};

/**
 * A response dropped by its caller with its body unread gives the body up (see
 * `InboundBody.discardUnread`), or it would hold the connection's credit for good.
 */
const droppedResponses = new FinalizationRegistry<InboundBody>((body) =>
  body.discardUnread("The response was garbage-collected before its body was read")
);

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

/** The peer's answer as a `Response` whose `url` is the request's. */
function exchangeResponse(
  head: ResponseHead,
  body: BodyInit | null,
  target: string,
): ExchangeResponse {
  // The init's webidl conversion costs microseconds on Deno; a plain 200 needs none.
  const response = head.status === 200 && head.statusText === ""
    ? new ExchangeResponse(body, target)
    : new ExchangeResponse(body, target, { status: head.status, statusText: head.statusText });
  if (head.headers.length > 0) appendHeaders(response.headers, head.headers);
  return response;
}

/** The exchanges this end started, by stream id. */
export class Caller implements BodySink {
  readonly #context: ConnectionContext;
  readonly #pumps: BodyPumps;
  /** By stream id: the shared empty map until the first exchange (idle connections). */
  #outgoing: Map<number, Outgoing> = NO_EXCHANGES as Map<number, Outgoing>;

  /**
   * @param context The connection's shared state.
   * @param pumps Where request bodies are read.
   */
  constructor(context: ConnectionContext, pumps: BodyPumps) {
    this.#context = context;
    this.#pumps = pumps;
  }

  /** Exchanges waiting for their response or still receiving its body. */
  get size(): number {
    return this.#outgoing.size;
  }

  /** The bodies arriving on this side's exchanges, for the stalled-reader watch. */
  *inboundBodies(): Generator<InboundBody> {
    for (const exchange of this.#outgoing.values()) if (exchange.body) yield exchange.body;
  }

  /** Opens a stream with the request; settles `resolve` or `reject` with the outcome. */
  send(
    parts: RequestParts,
    resolve: (answer: Response | AnswerParts) => void,
    reject: (error: unknown) => void,
  ): void {
    const { head, body, signal } = parts;
    const session = this.#context.session;
    let streamId: number;
    try {
      streamId = session.openStream(head, body === null);
    } catch (error) {
      return reject(refusal(error));
    }
    let cleanup = noop;
    if (signal) {
      const onAbort = (): void => {
        session.reset(streamId, ResetCode.Cancel, "Aborted by the caller");
        this.fail(streamId, abortReason(signal));
        this.#context.output.wake();
      };
      if (signal instanceof Cancel) {
        signal.listen(onAbort);
        cleanup = () => signal.listen(undefined);
      } else {
        signal.addEventListener("abort", onAbort, { once: true });
        cleanup = () => signal.removeEventListener("abort", onAbort);
      }
    }
    const exchange: Outgoing = {
      resolve,
      reject,
      responded: false,
      body: undefined,
      head: head.method === "HEAD",
      target: head.url,
      cleanup,
      pump: undefined,
      inParts: parts.inParts,
    };
    if (this.#outgoing === NO_EXCHANGES) this.#outgoing = new Map();
    this.#outgoing.set(streamId, exchange);
    if (body instanceof Uint8Array) {
      // Known bytes: queued at once, no stream to pump (the session splits and paces them).
      session.sendData(streamId, body, true);
    } else if (body !== null) {
      exchange.pump = this.#pumps.pump(streamId, body, this);
    }
    // Requests forwarded from an HTTP front arrive one per callback of its sockets: while
    // others are in flight, the flush gathers those of a macrotask into one message (see
    // `Urgency`). A lone one still goes at once.
    const whole = body === null || body instanceof Uint8Array;
    this.#context.output.wake(
      whole && !(parts.forwarded && this.#outgoing.size > 1) ? Urgency.Soon : Urgency.Flush,
    );
  }

  /** @param arrived The whole body if it has arrived (`null`: none); `undefined` if it streams in. */
  onResponse(streamId: number, head: ResponseHead, arrived: BodyBytes | null | undefined): void {
    const exchange = this.#outgoing.get(streamId);
    if (!exchange) return;
    const context = this.#context;
    const noBody = arrived === null || exchange.head || NULL_BODY_STATUS.has(head.status);
    if (!noBody && arrived === undefined) {
      exchange.body = new InboundBody(
        (bytes) => context.consume(streamId, bytes),
        () => {
          context.session.reset(streamId, ResetCode.Cancel, "Response body cancelled");
          this.finish(streamId);
          context.output.wake();
        },
        context.account,
      );
    }
    let answer: Response | AnswerParts;
    const body = noBody ? null : exchange.body?.stream ?? arrived ?? null;
    try {
      answer = exchange.inParts
        ? {
          status: head.status,
          statusText: head.statusText,
          headers: checkedHeaders(head.headers),
          body,
        }
        : exchangeResponse(head, body, exchange.target);
    } catch (error) {
      // Not responded: the fetch rejects (the body stream was never handed out).
      exchange.body = undefined;
      context.session.reset(streamId, ResetCode.StreamError, "Invalid response head");
      this.fail(
        streamId,
        new ExchangeResetError(
          `Invalid response head: ${(error as Error).message}`,
          ResetCode.StreamError,
        ),
      );
      context.output.wake();
      return;
    }
    exchange.responded = true;
    if (exchange.body) droppedResponses.register(answer, exchange.body);
    else {
      if (!exchange.inParts) markWhole(answer as Response, body as BodyBytes | null);
      this.finish(streamId);
    }
    const resolve = exchange.resolve;
    // The fetch promise holds the response: let go of it, so that a caller who drops the
    // response lets it be collected (see droppedResponses).
    exchange.resolve = noop;
    exchange.reject = noop;
    resolve(answer);
  }

  /** A chunk of a response body arrived. */
  onData(streamId: number, chunk: Uint8Array, end: boolean, retained: number): void {
    const body = this.#outgoing.get(streamId)?.body;
    if (!body) {
      // Nobody reads it (a HEAD or null-body response); give the credit straight back.
      this.#context.session.consume(streamId, chunk.byteLength);
      if (end) this.finish(streamId);
      return;
    }
    body.push(chunk, retained);
    if (end) {
      body.end();
      this.finish(streamId);
    }
  }

  /** The stream was reset, by the peer or by the session. */
  onReset(streamId: number, code: number, reason: string, byPeer: boolean): void {
    const message = `${byPeer ? "Peer reset the exchange" : "Exchange reset"}: ${reason}`;
    const error = code === ResetCode.Refused
      ? new ExchangeRefusedError(message)
      : code === ResetCode.TooLarge
      ? new ExchangeTooLargeError(message)
      : new ExchangeResetError(message, code);
    this.fail(streamId, error);
  }

  /** The exchange is over (its stream finished, or its response has no body to wait for). */
  finish(streamId: number): void {
    const exchange = this.#outgoing.get(streamId);
    if (!exchange) return;
    this.#outgoing.delete(streamId);
    exchange.cleanup();
    this.#context.exchangeEnded();
  }

  /** Ends the exchange with `error`: the fetch rejects, or the response body errors. */
  fail(streamId: number, error: unknown): void {
    const exchange = this.#outgoing.get(streamId);
    if (!exchange) return;
    this.finish(streamId);
    exchange.pump?.cancel(error);
    if (exchange.responded) exchange.body?.error(error);
    else exchange.reject(error);
    this.#pumps.wakeWriter(streamId);
  }

  /** The connection ended: every exchange fails with `error`. */
  failAll(error: unknown): void {
    for (const streamId of [...this.#outgoing.keys()]) this.fail(streamId, error);
  }

  /** A request body's chunk: queued on its stream. */
  push(streamId: number, chunk: Uint8Array, end: boolean): boolean {
    return this.#context.session.sendData(streamId, chunk, end);
  }

  /** Nothing of a request is held back. */
  heldFor(): number {
    return 0;
  }

  /** A request body's end leaves at once. */
  endUrgency(): Urgency {
    return Urgency.Soon;
  }

  /** The request body failed. */
  failed(streamId: number, error: unknown): void {
    this.#context.session.reset(streamId, ResetCode.Internal, "Body stream failed");
    this.fail(streamId, error);
  }
}

/** What a refusal of `Session.openStream` means to the caller, by its class. */
export function refusal(error: unknown): Error {
  if (error instanceof GoingAwayError) {
    return new ExchangeRefusedError("Connection is going away: no new exchanges");
  }
  if (error instanceof StreamLimitError) {
    return new ExchangeRefusedError(
      `Too many concurrent exchanges: the peer allows ${error.limit}`,
    );
  }
  if (error instanceof HeaderSizeError) return new ExchangeTooLargeError(error.message);
  // The session is not open yet, or no longer: its handshake did not complete.
  if (error instanceof TypeError) return new ConnectionClosedError("Connection is not open", 1006);
  return new ExchangeRefusedError(String((error as Error).message));
}

/** Why an aborted signal aborted. */
export function abortReason(signal: AbortSignal | Cancel): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}
