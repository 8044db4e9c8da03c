/**
 * Helpers for the exchange tests: deferred promises, byte-pattern streams that can be
 * checked without keeping a second copy, and small stream utilities.
 *
 * @module
 */

import assert from "node:assert/strict";

import { deferred } from "./_deferred.ts";

export { type Deferred, deferred } from "./_deferred.ts";

/** `RequestInit` for a streamed body (`duplex` is missing from some lib.dom versions). */
export function streamInit(
  body: ReadableStream<Uint8Array>,
  init: RequestInit = {},
): RequestInit {
  return { method: "POST", ...init, body, duplex: "half" } as RequestInit;
}

/** The byte at `offset` of a pattern body: cheap, and differs between any two 256-byte blocks. */
export function patternByte(offset: number): number {
  return (offset + (offset >>> 8) * 7 + (offset >>> 16) * 13 + (offset >>> 24) * 29) & 0xff;
}

/** A stream of `total` pattern bytes in fresh chunks of at most `chunkSize` bytes. */
export function patternStream(total: number, chunkSize = 64 * 1024): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= total) {
        controller.close();
        return;
      }
      const size = Math.min(chunkSize, total - offset);
      const chunk = new Uint8Array(size);
      for (let i = 0; i < size; i++) chunk[i] = patternByte(offset + i);
      offset += size;
      controller.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
}

/** What {@linkcode checkPattern} found. */
export interface PatternResult {
  /** Bytes read. */
  bytes: number;
  /** Offset of the first byte that does not match the pattern, or -1. */
  firstMismatch: number;
  /** Chunks read. */
  chunks: number;
}

/** Reads `stream` to its end, checking every byte against the pattern as it goes. */
export async function checkPattern(stream: ReadableStream<Uint8Array>): Promise<PatternResult> {
  let bytes = 0;
  let chunks = 0;
  let firstMismatch = -1;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks++;
    if (firstMismatch === -1) {
      for (let i = 0; i < value.byteLength; i++) {
        if (value[i] !== patternByte(bytes + i)) {
          firstMismatch = bytes + i;
          break;
        }
      }
    }
    bytes += value.byteLength;
  }
  return { bytes, firstMismatch, chunks };
}

/** A readable stream whose chunks the test enqueues by hand. */
export interface ManualStream {
  stream: ReadableStream<Uint8Array>;
  enqueue(text: string): void;
  close(): void;
  error(reason: unknown): void;
  /** Resolves with the reason when the consumer cancels the stream. */
  cancelled: Promise<unknown>;
}

/** Makes a {@linkcode ManualStream}. */
export function manualStream(): ManualStream {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const cancelled = deferred<unknown>();
  const encoder = new TextEncoder();
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    cancel(reason) {
      cancelled.resolve(reason);
    },
  });
  return {
    stream,
    enqueue: (text) => controller.enqueue(encoder.encode(text)),
    close: () => controller.close(),
    error: (reason) => controller.error(reason),
    cancelled: cancelled.promise,
  };
}

/** Reads the next chunk of `reader` as text; fails if the stream has ended. */
export async function readText(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  decoder: TextDecoder = new TextDecoder(),
): Promise<string> {
  const { done, value } = await reader.read();
  assert.equal(done, false, "the body ended early");
  return decoder.decode(value, { stream: true });
}

/** Resolves when `signal` aborts (at once if it already has). */
export function whenAborted(signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve) => {
    signal.addEventListener("abort", () => resolve(signal.reason), { once: true });
  });
}

/**
 * A handler that never answers, rejecting once its request aborts: `arrived` resolves when
 * the request comes, `aborted` with the reason its signal aborted with.
 */
export function unanswered(): {
  handler: (request: Request) => Promise<Response>;
  arrived: Promise<void>;
  aborted: Promise<unknown>;
} {
  const arrived = deferred<void>();
  const aborted = deferred<unknown>();
  const handler = async (request: Request): Promise<Response> => {
    arrived.resolve();
    const reason = await whenAborted(request.signal);
    aborted.resolve(reason);
    throw reason;
  };
  return { handler, arrived: arrived.promise, aborted: aborted.promise };
}

/** Whether `error` is a `DOMException` named `name`. */
export function isDomError(error: unknown, name: string): boolean {
  return error instanceof DOMException && error.name === name;
}

/** A deterministic shuffle (xorshift32), so a failing order can be reproduced. */
export function shuffled<T>(items: readonly T[], seed = 0x2545f491): T[] {
  const out = [...items];
  let state = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
