/**
 * Responses relayed from an upstream that sent no length (a proxy's, such as the agent's
 * tunnel): a complete body held with its head is sent with a `Content-Length` (as an HTTP
 * server says the length of a body it has whole), except for these, whose framing a faithful
 * proxy keeps: a gateway then answers chunked, as the upstream did and as nginx would.
 *
 * @module
 */

import { Mark } from "./_mark.ts";

const relayed = new Mark<Response>("relayedWithoutLength");

/**
 * Marks a response as relayed from an upstream that sent no length.
 *
 * @param response The response about to be returned by a handler.
 * @returns The same response.
 */
export function relayedWithoutLength(response: Response): Response {
  return relayed.set(response);
}

/** Whether a response was marked with {@linkcode relayedWithoutLength}. */
export function isRelayedWithoutLength(response: Response): boolean {
  return relayed.has(response);
}
