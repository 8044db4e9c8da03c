/**
 * Responses from `connection.fetch()` / `forward()` whose body was all in memory when the
 * response was made (it came with its head, or there is none): reading one never waits on
 * the peer, so a relay may read it at once instead of through a stream.
 *
 * @module
 */

import { Mark } from "./_mark.ts";

const whole = new Mark<Response>("whole");

/**
 * Marks a response whose body is all in memory.
 *
 * @param response The response, as it is made.
 */
export function markWhole(response: Response): void {
  whole.set(response);
}

/** Whether a response was marked with {@linkcode markWhole}. */
export function isWhole(response: Response): boolean {
  return whole.has(response);
}
