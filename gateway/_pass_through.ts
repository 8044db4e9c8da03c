/**
 * A body passed through the gateway, counted, with one call when it is over.
 *
 * @module
 */

/** What a body passing through says of its flow while it goes. */
export interface Flow {
  /** Whether its reader has asked for bytes that its source has not given yet. */
  starved: boolean;
}

/**
 * Passes `body` through, counting its bytes, and calls `done` once when it ends (no
 * argument), fails (the error) or is cancelled by the reader (the reason). A
 * `TransformStream` would not forward a cancel from the caller to the agent.
 *
 * @param body The body to pass on.
 * @param count Called with each chunk's size.
 * @param done Called once at the end.
 * @param flow Kept up to date, if given: whether the reader waits on the source.
 * @returns The stream to hand on.
 */
export function passThrough(
  body: ReadableStream<Uint8Array>,
  count: (bytes: number) => void,
  done: (error?: unknown) => void,
  flow?: Flow,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let finished = false;
  const finish = (error?: unknown): void => {
    if (finished) return;
    finished = true;
    done(error);
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        if (flow) flow.starved = true;
        const { done: end, value } = await reader.read();
        if (flow) flow.starved = false;
        if (end) {
          finish();
          controller.close();
        } else {
          count(value.byteLength);
          controller.enqueue(value);
        }
      } catch (error) {
        finish(error);
        controller.error(error);
      }
    },
    cancel(reason) {
      finish(reason ?? new DOMException("The reader cancelled the body", "AbortError"));
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
