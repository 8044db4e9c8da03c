/**
 * A handler that takes a request as the wire's parts and answers with parts: what the
 * agent's tunnel does, which passes a request on to its upstream and an answer back from it
 * and needs no `Request`, `Headers` or `Response` between.
 *
 * Those objects were a fifth of a tunnelling agent's CPU per request: the handler's `Request`
 * and its `Headers`, iterated, then `Headers`, a `Response` and a body stream for a whole
 * upload, and the list taken back out of the upstream's answer (`bench/gateway.ts`, the agent
 * 104 → 83 µs per request on Deno and 114 → 94 on Bun: bench/RESULTS.md).
 * A handler function that carries a {@linkcode PARTS} property is still an ordinary
 * `Handler` wherever else it is called; the responder calls the parts form instead.
 *
 * @module
 */

import type { Cancel } from "./_cancel.ts";
import { appendHeaders, headerList } from "./_header_list.ts";
import { isRelayedWithoutLength, relayedWithoutLength } from "./_relayed.ts";
import { wholeBytes } from "./_whole.ts";

/** Where a handler function carries its {@linkcode PartsHandler} form. */
export const PARTS: unique symbol = Symbol("swaggersocket.parts");

/** A request as the peer sent it. */
export interface IncomingParts {
  /** The method, as sent. */
  method: string;
  /** The request target, as sent (`HandlerInfo.target`). */
  target: string;
  /** The headers as the wire's `[name, value]` list: names as sent, duplicates apart. */
  headers: readonly (readonly [string, string])[];
  /** The body: bytes if it came whole with the head, a stream if it streams in, or none. */
  body: Uint8Array | ReadableStream<Uint8Array> | null;
  /** Aborted when the exchange ends early (the caller gave up, the connection closed). */
  cancel: Cancel;
  /** The peer's address (`HandlerInfo.remoteAddr.hostname`), as the connection knows it. */
  remoteAddr?: string;
}

/** An answer as it goes on the wire. */
export interface OutgoingParts {
  /** 200–599. */
  status: number;
  /** The reason phrase. */
  statusText: string;
  /** The headers, as a list. */
  headers: [string, string][];
  /** The body: bytes, a stream, or none. */
  body: Uint8Array | ReadableStream<Uint8Array> | null;
  /**
   * Whether a streamed body that turns out short goes without the `Content-Length` that the
   * responder adds to a body it holds whole (as `relayedWithoutLength` says of a `Response`).
   */
  withoutLength: boolean;
}

/** The parts form of a handler. */
export type PartsHandler = (request: IncomingParts) => Promise<OutgoingParts>;

/**
 * Gives `handler` a parts form.
 *
 * @param handler The handler as anyone may call it.
 * @param parts The same handler on parts.
 * @returns `handler`.
 */
export function withParts<H extends object>(handler: H, parts: PartsHandler): H {
  (handler as { [PARTS]?: PartsHandler })[PARTS] = parts;
  return handler;
}

/** The parts form of `handler`, if it has one. */
export function partsOf(handler: object): PartsHandler | undefined {
  return (handler as { [PARTS]?: PartsHandler })[PARTS];
}

/**
 * An answer in parts as a standard `Response`: what a parts form's `Request` form returns.
 *
 * @param out The answer.
 * @returns The `Response`, marked to stay without a length if `out.withoutLength`.
 */
export function responseOf(out: OutgoingParts): Response {
  const response = new Response(out.body as BodyInit | null, {
    status: out.status,
    statusText: out.statusText,
  });
  appendHeaders(response.headers, out.headers);
  return out.withoutLength ? relayedWithoutLength(response) : response;
}

/**
 * A `Response` as an answer in parts, for a parts form that was handed one (an error made as a
 * `Response`): its bytes if it was made whole (`_whole.ts`), else its body stream.
 *
 * @param response The answer.
 * @returns The parts, staying without a length if the response was marked so.
 */
export function partsOfResponse(response: Response): OutgoingParts {
  return {
    status: response.status,
    statusText: response.statusText,
    headers: headerList(response.headers),
    body: wholeBytes(response) ?? response.body,
    withoutLength: isRelayedWithoutLength(response),
  };
}
