/**
 * A body arriving in DATA frames, as a pull-based `ReadableStream`.
 *
 * Chunks wait in a queue until the reader asks for them; only then is the session
 * told they were consumed, so the peer's credit (and our memory) is bounded by the
 * flow-control windows however slowly the application reads. Every byte pushed is
 * reported consumed exactly once: when the reader takes it, or when it is dropped
 * (the body was cancelled or failed), since the connection's window opens only for
 * bytes consumed.
 *
 * What the queue holds is charged at what it keeps alive, not at what it carries: a chunk
 * at the bytes it retains (a view keeps its whole message), and small chunks are copied
 * into shared blocks, so that a peer sending a body one byte per message cannot make a
 * chunk object per byte. A chunk handed straight to a waiting reader is never charged.
 *
 * A body nobody reads would keep the connection's credit for good. `discardUnread()`
 * drains a body nobody has started to read (a request body whose response is out, as HTTP
 * servers do; a response whose `Response` was garbage-collected unread, as undici does).
 *
 * @module
 */

/** Chunks smaller than this are copied into a block when they have to wait. */
const SMALL_CHUNK_BYTES = 4096;
/** A block's capacity: the first is small, each next one twice the last, up to the most. */
const MIN_BLOCK_BYTES = 4096;
const MAX_BLOCK_BYTES = 64 * 1024;
/** What one waiting chunk costs beyond its bytes: the typed array and its buffer's objects. */
export const CHUNK_OVERHEAD_BYTES = 256;

/** Body bytes as `Request` and `Response` take them. */
export type BodyBytes = Uint8Array<ArrayBuffer>;

interface Waiting {
  /** The bytes, or for a block, its whole buffer. */
  bytes: Uint8Array;
  /** How much of a block is used; `bytes.byteLength` for any other chunk. */
  used: number;
  /** What it is charged. */
  charge: number;
  /** Whether more small chunks may still be copied into it. */
  block: boolean;
}

/** The receiving end of one body. */
export class InboundBody {
  #queue: Waiting[] = [];
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #wanted = false;
  #ended = false;
  #failed: unknown = undefined;
  #done = false;
  /** Whether the reader ever asked for a chunk. */
  #pulled = false;
  #nextBlock = MIN_BLOCK_BYTES;
  readonly #onConsume: (bytes: number) => void;
  readonly #onCancel: (reason: unknown) => void;
  readonly #account: (delta: number) => void;
  /** The body for `new Request(...)` / `new Response(...)`. */
  readonly stream: ReadableStream<Uint8Array>;

  /**
   * @param onConsume Called with the size of each chunk the reader takes, and of what is dropped.
   * @param onCancel Called if the reader cancels the stream.
   * @param account Called with each change to what the queue is charged (positive or negative).
   */
  constructor(
    onConsume: (bytes: number) => void,
    onCancel: (reason: unknown) => void,
    account: (delta: number) => void,
  ) {
    this.#onConsume = onConsume;
    this.#onCancel = onCancel;
    this.#account = account;
    this.stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: () => {
        this.#wanted = true;
        this.#pulled = true;
        this.#deliver();
      },
      cancel: (reason) => {
        this.#done = true;
        this.#onCancel(reason);
        this.#drop();
      },
    }, { highWaterMark: 0 });
  }

  /** Chunks handed to the reader so far: a reader that takes nothing leaves it unchanged. */
  handed = 0;
  /** `handed` when the stalled-reader watch last looked (see `_stalled_readers.ts`). */
  mark = -1;

  /** Whether the body has ended, failed or been cancelled. */
  get finished(): boolean {
    return this.#done;
  }

  /** Whether chunks wait for the reader (so hold the connection's credit). */
  get waiting(): boolean {
    return !this.#done && this.#queue.length > 0;
  }

  /**
   * Ends the body from this side (nobody will read it, or its reader took nothing while its
   * waiting bytes held the connection): the exchange ends as if the reader had cancelled
   * (`onCancel` runs), what waits is dropped and consumed, and the reader sees `error`.
   *
   * @param error What the reader is told.
   */
  cut(error: unknown): void {
    if (this.#done) return;
    this.#onCancel(error);
    this.error(error);
  }

  /**
   * Adds a chunk from the peer.
   *
   * @param chunk The bytes.
   * @param retained What the chunk keeps alive (its message, if it is a view into one).
   */
  push(chunk: Uint8Array, retained: number): void {
    if (this.#done) {
      // Nobody will read it: consumed at once.
      this.#onConsume(chunk.byteLength);
      return;
    }
    if (chunk.byteLength > 0) {
      if (this.#wanted && this.#queue.length === 0) this.#hand(chunk);
      else this.#wait(chunk, retained);
    }
    this.#deliver();
  }

  /** The peer ended the body. */
  end(): void {
    if (this.#done) return;
    this.#ended = true;
    this.#deliver();
  }

  /**
   * Nobody will want the body: if nobody has started reading it (taken a reader), it is
   * cancelled as if its reader had (`onCancel` runs), what waits is dropped, and what still
   * arrives is consumed at once; a late reader gets an `AbortError`. A body being read is
   * left to its reader.
   *
   * @param why What a late reader is told.
   */
  discardUnread(why: string): void {
    // A reader taken is reading, though its first pull may not have come yet.
    if (this.#pulled || this.stream.locked) return;
    this.cut(new DOMException(why, "AbortError"));
  }

  /** The body cannot complete: the reader sees `error` after any queued chunks are dropped. */
  error(error: unknown): void {
    if (this.#done) return;
    this.#failed = error;
    this.#done = true;
    this.#drop();
    try {
      this.#controller.error(error);
    } catch {
      // Already closed or errored.
    }
  }

  #wait(chunk: Uint8Array, retained: number): void {
    const queue = this.#queue;
    if (chunk.byteLength >= SMALL_CHUNK_BYTES) {
      // A view that is less than half of what it keeps alive (a chunk of a small message,
      // which the session hands on as a view) waits as a copy: no waiting byte costs more
      // than two.
      const kept = retained > 2 * chunk.byteLength ? new Uint8Array(chunk) : chunk;
      const charge = (kept === chunk ? retained : kept.byteLength) + CHUNK_OVERHEAD_BYTES;
      queue.push({ bytes: kept, used: kept.byteLength, charge, block: false });
      this.#account(charge);
      return;
    }
    let tail = queue[queue.length - 1];
    if (tail?.block !== true || tail.bytes.byteLength - tail.used < chunk.byteLength) {
      const capacity = this.#nextBlock;
      this.#nextBlock = Math.min(MAX_BLOCK_BYTES, 2 * capacity);
      tail = {
        bytes: new Uint8Array(capacity),
        used: 0,
        charge: capacity + CHUNK_OVERHEAD_BYTES,
        block: true,
      };
      queue.push(tail);
      this.#account(tail.charge);
    }
    tail.bytes.set(chunk, tail.used);
    tail.used += chunk.byteLength;
  }

  #deliver(): void {
    if (this.#done) return;
    while (this.#wanted && this.#queue.length > 0) {
      const waiting = this.#queue.shift()!;
      this.#account(-waiting.charge);
      this.#hand(
        waiting.used === waiting.bytes.byteLength
          ? waiting.bytes
          : waiting.bytes.subarray(0, waiting.used),
      );
      // With highWaterMark 0 the stream calls pull again when the next read is pending.
    }
    if (this.#ended && this.#queue.length === 0 && this.#failed === undefined) {
      this.#done = true;
      this.#controller.close();
    }
  }

  #hand(chunk: Uint8Array): void {
    this.handed++;
    this.#wanted = false;
    this.#controller.enqueue(chunk);
    this.#onConsume(chunk.byteLength);
  }

  /** Releases every waiting chunk, and reports its bytes consumed. */
  #drop(): void {
    let charge = 0;
    let bytes = 0;
    for (const waiting of this.#queue) {
      charge += waiting.charge;
      bytes += waiting.used;
    }
    this.#queue = [];
    if (charge > 0) this.#account(-charge);
    if (bytes > 0) this.#onConsume(bytes);
  }
}
