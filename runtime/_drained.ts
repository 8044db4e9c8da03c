/**
 * Waiting out a `node:stream` writable's backpressure.
 *
 * @module
 */

/** The part of a `node:stream` writable (a `node:http` request or response) used here. */
export interface Drainable {
  on(event: "drain" | "close", listener: () => void): unknown;
  off(event: "drain" | "close", listener: () => void): unknown;
}

/**
 * Resolves when `stream` has drained after a `write()` returned `false`, or has closed (the
 * caller then finds it destroyed and stops writing).
 *
 * @param stream The writable.
 * @returns Resolves on `drain` or `close`.
 */
export function drained(stream: Drainable): Promise<void> {
  return new Promise<void>((resolve) => {
    const settle = (): void => {
      stream.off("drain", settle);
      stream.off("close", settle);
      resolve();
    };
    stream.on("drain", settle);
    stream.on("close", settle);
  });
}
