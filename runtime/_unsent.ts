/**
 * What a TCP connection adapter has not written yet, and who waits for it to go: the part
 * of `node:net`'s writable that `Deno.connect` and `Bun.connect` leave to their user.
 *
 * @module
 */

/** What may wait before `write()` tells the writer to wait, as `node:net`'s default. */
const HIGH_WATER = 64 * 1024;

/** Bytes not written yet, oldest first. */
export class Unsent {
  readonly #chunks: Uint8Array[] = [];
  #bytes = 0;
  #drained: (() => void)[] = [];

  /** Bytes waiting. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The oldest chunk waiting, if any. */
  get first(): Uint8Array | undefined {
    return this.#chunks[0];
  }

  /** Whether a writer may go on writing: what waits is under the high-water mark. */
  get belowHighWater(): boolean {
    return this.#bytes < HIGH_WATER;
  }

  /** Queues bytes behind those waiting. */
  add(bytes: Uint8Array): void {
    this.#chunks.push(bytes);
    this.#bytes += bytes.byteLength;
  }

  /**
   * Takes what went of the oldest chunk; once nothing waits, `drained()` settles.
   *
   * @param written Bytes of {@linkcode first} that the socket took.
   */
  wrote(written: number): void {
    const first = this.#chunks[0];
    this.#bytes -= written;
    if (written < first.byteLength) this.#chunks[0] = first.subarray(written);
    else this.#chunks.shift();
    if (this.#bytes === 0) this.#settle();
  }

  /** Forgets what waits (the connection is gone), and lets who waits go. */
  clear(): void {
    this.#chunks.length = 0;
    this.#bytes = 0;
    this.#settle();
  }

  /** Resolves once nothing waits. */
  drained(): Promise<void> {
    if (this.#bytes === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drained.push(resolve));
  }

  #settle(): void {
    const drained = this.#drained;
    this.#drained = [];
    for (const resolve of drained) resolve();
  }
}
