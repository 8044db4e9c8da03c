/**
 * A body arriving in DATA frames, as a pull-based `ReadableStream`.
 *
 * Chunks wait in a queue until the reader asks for them; only then is the session
 * told they were consumed, so the peer's credit (and our memory) is bounded by the
 * flow-control window however slowly the application reads.
 *
 * @module
 */

/** The receiving end of one body. */
export class InboundBody {
  #queue: Uint8Array[] = [];
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #wanted = false;
  #ended = false;
  #failed: unknown = undefined;
  #done = false;
  readonly #onConsume: (bytes: number) => void;
  readonly #onCancel: (reason: unknown) => void;
  /** The body for `new Request(...)` / `new Response(...)`. */
  readonly stream: ReadableStream<Uint8Array>;

  /**
   * @param onConsume Called with the size of each chunk the reader takes.
   * @param onCancel Called if the reader cancels the stream.
   */
  constructor(onConsume: (bytes: number) => void, onCancel: (reason: unknown) => void) {
    this.#onConsume = onConsume;
    this.#onCancel = onCancel;
    this.stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: () => {
        this.#wanted = true;
        this.#deliver();
      },
      cancel: (reason) => {
        this.#done = true;
        this.#queue = [];
        this.#onCancel(reason);
      },
    }, { highWaterMark: 0 });
  }

  /** Whether the body has ended, failed or been cancelled. */
  get finished(): boolean {
    return this.#done;
  }

  /** Adds a chunk from the peer. */
  push(chunk: Uint8Array): void {
    if (this.#done) return;
    if (chunk.byteLength > 0) this.#queue.push(chunk);
    this.#deliver();
  }

  /** The peer ended the body. */
  end(): void {
    if (this.#done) return;
    this.#ended = true;
    this.#deliver();
  }

  /** The body cannot complete: the reader sees `error` after any queued chunks are dropped. */
  error(error: unknown): void {
    if (this.#done) return;
    this.#failed = error;
    this.#queue = [];
    this.#done = true;
    try {
      this.#controller.error(error);
    } catch {
      // Already closed or errored.
    }
  }

  #deliver(): void {
    if (this.#done) return;
    while (this.#wanted && this.#queue.length > 0) {
      const chunk = this.#queue.shift()!;
      this.#wanted = false;
      this.#controller.enqueue(chunk);
      this.#onConsume(chunk.byteLength);
      // With highWaterMark 0 the stream calls pull again when the next read is pending.
    }
    if (this.#ended && this.#queue.length === 0 && this.#failed === undefined) {
      this.#done = true;
      this.#controller.close();
    }
  }
}
