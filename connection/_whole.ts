/**
 * Responses from `connection.fetch()` / `forward()` whose body was all in memory when the
 * response was made (it came with its head, or there is none): reading one never waits on
 * the peer, so a relay may read it at once instead of through a stream, and, given the
 * bytes it was made of, without reading it at all.
 *
 * @module
 */

import { Mark } from "./_mark.ts";

const whole = new Mark<Response>("whole");
/** The bytes a whole response was made of (`markWhole`'s second argument). */
const BYTES: unique symbol = Symbol("swaggersocket.wholeBytes");
const EMPTY = new Uint8Array(0);

/**
 * Marks a response whose body is all in memory.
 *
 * @param response The response, as it is made.
 * @param bytes The bytes its body was made of (`null`: it has none), if known: a relay then
 *   writes them as they are, with no `arrayBuffer()` (a promise and a copy per answer).
 */
export function markWhole(response: Response, bytes?: Uint8Array | null): void {
  whole.set(response);
  if (bytes !== undefined) (response as { [BYTES]?: Uint8Array })[BYTES] = bytes ?? EMPTY;
}

/**
 * The bytes a whole response was made of, while its body is unread (they are then what
 * reading it would give); `undefined` if they were not given or the body was read.
 */
export function wholeBytes(response: Response): Uint8Array | undefined {
  const bytes = (response as { [BYTES]?: Uint8Array })[BYTES];
  return bytes !== undefined && !response.bodyUsed ? bytes : undefined;
}

/** Whether a response was marked with {@linkcode markWhole}. */
export function isWhole(response: Response): boolean {
  return whole.has(response);
}
