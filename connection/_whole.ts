/**
 * Responses from `connection.fetch()` / `forward()` whose body was all in memory when the
 * response was made (it came with its head, or there is none): reading one never waits on
 * the peer, so a relay may read it at once instead of through a stream.
 *
 * @module
 */

// A property, not a `WeakSet`: on V8 a `WeakSet.add` per response cost 5 % of the CPU of a
// small exchange, and its entries are ephemerons the garbage collector works through.
const WHOLE: unique symbol = Symbol("swaggersocket.whole");

/**
 * Marks a response whose body is all in memory.
 *
 * @param response The response, as it is made.
 */
export function markWhole(response: Response): void {
  (response as { [WHOLE]?: true })[WHOLE] = true;
}

/** Whether a response was marked with {@linkcode markWhole}. */
export function isWhole(response: Response): boolean {
  return (response as { [WHOLE]?: true })[WHOLE] === true;
}
