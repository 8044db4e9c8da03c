/**
 * Responses from `connection.fetch()` / `forward()` whose body was all in memory when the
 * response was made (it came with its head, or there is none): reading one never waits on
 * the peer, so a relay writes the bytes it was made of at once, with no stream and no read.
 *
 * @module
 */

/**
 * The bytes a whole response was made of: the mark itself (a symbol property, as
 * `_mark.ts` explains), so that a relay can write them without reading the body.
 */
const BYTES: unique symbol = Symbol("swaggersocket.wholeBytes");
const EMPTY = new Uint8Array(0);

/**
 * Marks a response whose body is all in memory.
 *
 * @param response The response, as it is made.
 * @param bytes The bytes its body was made of (`null`: it has none): a relay writes them as
 *   they are, with no `arrayBuffer()` (a promise and a copy per answer).
 */
export function markWhole(response: Response, bytes: Uint8Array | null): void {
  (response as { [BYTES]?: Uint8Array })[BYTES] = bytes ?? EMPTY;
}

/**
 * The bytes a whole response was made of, while its body is unread (they are then what
 * reading it would give); `undefined` if it is not marked or its body was read.
 */
export function wholeBytes(response: Response): Uint8Array | undefined {
  const bytes = (response as { [BYTES]?: Uint8Array })[BYTES];
  return bytes !== undefined && !response.bodyUsed ? bytes : undefined;
}

/** Whether a response was marked with {@linkcode markWhole}. */
export function isWhole(response: Response): boolean {
  return (response as { [BYTES]?: Uint8Array })[BYTES] !== undefined;
}
