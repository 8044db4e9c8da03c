/**
 * Body pumps: a body the application gives as a stream (a request's, a response's) is read
 * chunk by chunk onto its protocol stream, as fast as the peer and the socket take it.
 *
 * A pump stops reading while the stream's outbox is full (until the session says
 * `writable`) and while the connection's queued output is over its share of the budget
 * (`maxQueuedBytes`; but see `MIN_STREAM_QUEUED_BYTES`). Where each chunk goes is the
 * {@linkcode BodySink}'s business: the caller's side queues it, the responder's side may
 * hold it with its response head.
 *
 * @module
 */

import type { ConnectionContext } from "./_context.ts";
import type { Urgency } from "./_output.ts";

/** Where a pump's chunks go: the caller's side of an exchange, or the responder's. */
export interface BodySink {
  /**
   * Takes a chunk for the stream (the last one, empty, with `end`).
   *
   * @returns Whether the stream can take more now (as `Session.sendData` says).
   */
  push(streamId: number, chunk: Uint8Array, end: boolean): boolean;
  /** Bytes of the stream held back outside the session (a held response's). */
  heldFor(streamId: number): number;
  /** How soon the body's end leaves (asked before it is pushed). */
  endUrgency(streamId: number): Urgency;
  /** The body failed: reset the stream (`ResetCode.Internal`) and end the exchange. */
  failed(streamId: number, error: unknown): void;
}

/** Default for `maxQueuedBytes`: an eighth of the default 32 MiB budget. */
export const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/**
 * A body whose stream has less than this waiting may always read its next chunk, however
 * much waits in all: otherwise streams the peer does not read (their windows spent) could
 * hold the whole share and starve a stream the peer is waiting for.
 */
const MIN_STREAM_QUEUED_BYTES = 16 * 1024;
const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

/** One connection's body pumps, and what they wait on. */
export class BodyPumps {
  readonly #context: ConnectionContext;
  readonly #maxQueuedBytes: number;
  /** Pumps waiting for queued output to drop below `#maxQueuedBytes` (made when needed). */
  #queueWaiters: (() => void)[] | undefined;
  /** Pumps waiting for their stream's window, by stream (made when needed, as `#queueWaiters`). */
  #writableWaiters: Map<number, () => void> | undefined;

  /**
   * @param context The connection's shared state.
   * @param maxQueuedBytes Bodies are read only while less output than this waits.
   */
  constructor(context: ConnectionContext, maxQueuedBytes: number = MAX_QUEUED_BYTES) {
    this.#context = context;
    this.#maxQueuedBytes = maxQueuedBytes;
  }

  /**
   * Starts reading `body` onto a stream.
   *
   * @returns The pump, to cancel when the exchange ends first.
   */
  pump(streamId: number, body: ReadableStream<unknown>, sink: BodySink): BodyPump {
    const pump = new BodyPump(this, streamId, body, sink);
    pump.run();
    return pump;
  }

  /** Output went out or was dropped: the pumps waiting for room look again. */
  wakeQueued(): void {
    const waiters = this.#queueWaiters;
    if (waiters === undefined) return;
    this.#queueWaiters = undefined;
    for (const wake of waiters) wake();
  }

  /** The session said a stream can take more, or the stream ended: its pump goes on. */
  wakeWriter(streamId: number): void {
    const wake = this.#writableWaiters?.get(streamId);
    if (wake) {
      this.#writableWaiters!.delete(streamId);
      wake();
    }
  }

  /** The connection ended: every waiting pump goes on, to find its exchange gone. */
  wakeAll(): void {
    const waiters = this.#writableWaiters;
    this.#writableWaiters = undefined;
    for (const wake of waiters?.values() ?? []) wake();
    this.wakeQueued();
  }

  /** @internal For `BodyPump`. */
  get context(): ConnectionContext {
    return this.#context;
  }

  /** @internal Whether a stream's body must wait before its next chunk is read. */
  mustWait(streamId: number, sink: BodySink): boolean {
    const session = this.#context.session;
    if (session.bufferedBytes + this.#context.heldBytes < this.#maxQueuedBytes) return false;
    return session.queuedBytes(streamId) + sink.heldFor(streamId) >= MIN_STREAM_QUEUED_BYTES;
  }

  /** @internal Resolves when queued output may have dropped. */
  queueRoom(): Promise<void> {
    return new Promise<void>((resolve) => (this.#queueWaiters ??= []).push(resolve));
  }

  /** @internal Resolves when the stream can take more. */
  writable(streamId: number): Promise<void> {
    return new Promise<void>((resolve) =>
      (this.#writableWaiters ??= new Map()).set(streamId, resolve)
    );
  }
}

/** One body being read onto its stream. */
export class BodyPump {
  readonly #pumps: BodyPumps;
  readonly #streamId: number;
  readonly #body: ReadableStream<unknown>;
  readonly #sink: BodySink;
  #reader: ReadableStreamDefaultReader<unknown> | undefined;
  #stopped = false;

  /**
   * @param pumps The connection's pumps.
   * @param streamId The stream.
   * @param body The body.
   * @param sink Where its chunks go.
   */
  constructor(pumps: BodyPumps, streamId: number, body: ReadableStream<unknown>, sink: BodySink) {
    this.#pumps = pumps;
    this.#streamId = streamId;
    this.#body = body;
    this.#sink = sink;
  }

  /** Stops reading and cancels the body (the exchange ended). */
  cancel(reason: unknown): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#reader?.cancel(reason).catch(() => {});
  }

  /** @internal Reads the body until it ends, fails or is cancelled. */
  async run(): Promise<void> {
    const pumps = this.#pumps;
    const context = pumps.context;
    const session = context.session;
    const streamId = this.#streamId;
    const sink = this.#sink;
    try {
      // Inside the try: a body that is locked or already used fails this exchange only.
      const reader = this.#reader = this.#body.getReader();
      for (;;) {
        // A peer that does not read makes output wait; read no more from the application
        // while the connection's share of it is full (but see MIN_STREAM_QUEUED_BYTES).
        while (pumps.mustWait(streamId, sink) && !context.ended && !this.#stopped) {
          await pumps.queueRoom();
        }
        const { done, value } = await reader.read();
        if (this.#stopped || !session.hasStream(streamId)) {
          if (!done) reader.cancel().catch(() => {});
          return;
        }
        if (done) {
          const urgency = sink.endUrgency(streamId);
          sink.push(streamId, EMPTY, true);
          context.output.wake(urgency);
          return;
        }
        const more = sink.push(streamId, toBytes(value), false);
        context.output.wake();
        if (this.#stopped) return; // The session refused a held head, which cancelled this pump.
        if (!more) await pumps.writable(streamId);
      }
    } catch (error) {
      if (this.#stopped || !session.hasStream(streamId)) return;
      context.logger.warn("swaggersocket: body stream failed", error);
      sink.failed(streamId, error);
      context.output.wake();
    }
  }
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
