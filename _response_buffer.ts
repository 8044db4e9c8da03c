/**
 * Collecting a response body of known length before answering, for a server that would
 * otherwise send it chunked: Bun's sends a streamed body chunked whatever its
 * `Content-Length` says (oven-sh/bun#10507), and only a body in memory keeps its length.
 * Bounded per response and in total, so that no caller or agent can make the gateway hold
 * much; past the bounds a body streams, chunked.
 *
 * @module
 */

/** Largest body collected to keep its `Content-Length`: 1 MiB. */
export const MAX_COLLECTED_RESPONSE = 1024 * 1024;
/** Bytes all responses being collected may hold at once: 64 MiB. */
export const COLLECTED_RESPONSES_BUDGET = 64 * 1024 * 1024;

/** Collects response bodies within a byte budget. */
export class ResponseBuffer {
  #held = 0;

  /**
   * @param maxBody The largest body collected.
   * @param budget The bytes all bodies being collected may hold at once.
   */
  constructor(readonly maxBody: number, readonly budget: number) {}

  /** Bytes held now by bodies being collected. */
  get held(): number {
    return this.#held;
  }

  /**
   * Whether a body of `length` bytes may be collected now.
   *
   * @param length The body's announced length.
   * @returns `true` if it fits both bounds.
   */
  admits(length: number): boolean {
    return length <= this.maxBody && this.#held + length <= this.budget;
  }

  /**
   * Reads a body of exactly `length` bytes into memory. Call only after `admits(length)`.
   *
   * @param body The body.
   * @param length Its announced length.
   * @param signal The caller's: when it aborts (the caller left), reading stops.
   * @param done Called once when the body has been read or has failed.
   * @returns The bytes, or the error if the body failed, ended short or ran long.
   */
  async collect(
    body: ReadableStream<Uint8Array>,
    length: number,
    signal: AbortSignal,
    done: () => void,
  ): Promise<Uint8Array<ArrayBuffer> | Error> {
    this.#held += length;
    const bytes = new Uint8Array(length);
    const reader = body.getReader();
    const onAbort = (): void => {
      reader.cancel(signal.reason).catch(() => {});
    };
    signal.addEventListener("abort", onAbort, { once: true });
    let filled = 0;
    try {
      if (signal.aborted) throw signal.reason;
      for (;;) {
        const { done: end, value } = await reader.read();
        if (end) break;
        if (filled + value.byteLength > length) {
          throw new RangeError(`The body ran past its Content-Length of ${length}`);
        }
        bytes.set(value, filled);
        filled += value.byteLength;
      }
      if (filled < length) {
        throw new RangeError(`The body ended at ${filled} of its ${length} bytes`);
      }
      return bytes;
    } catch (error) {
      reader.cancel(error).catch(() => {});
      return error instanceof Error ? error : new Error(String(error));
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.#held -= length;
      done();
    }
  }
}
