/**
 * The peer's answer to a forwarded request as parts: status, headers as a list, body as bytes
 * or a stream, with no `Response`, `Headers` or body stream made of them. The gateway's front
 * writes these to its caller (`Connection.forwardAsParts`): building a `Response` of an agent's
 * answer, checking its headers in a `Headers` and iterating them again to write them was ~8 %
 * of a Deno gateway's CPU per request.
 *
 * What a `Headers` would refuse is refused here as well, with the same `TypeError`, so that
 * an agent's answer reaches a caller only if a `Response` could have been made of it.
 *
 * @module
 */

import { TOKEN } from "../_http_token.ts";

/** An answer as it came from the peer, its headers checked. */
export interface AnswerParts {
  /** 200–599. */
  status: number;
  /** The reason phrase (may be empty). */
  statusText: string;
  /** The headers in the order sent: names lower-case, values trimmed as `Headers` trims them. */
  headers: [string, string][];
  /** The body: bytes if it came whole with the head, a stream if it streams in, or none. */
  body: Uint8Array | ReadableStream<Uint8Array> | null;
}

/** What no field value may hold (Fetch's "header value"; beyond U+00FF it is no byte). */
const FORBIDDEN_IN_VALUE = /[\0\r\n\u0100-\uffff]/;
/** HTTP whitespace at either end, which `Headers` strips from a value. */
const EDGE_WHITESPACE = /^[\t\n\r ]+|[\t\n\r ]+$/g;

/**
 * A peer's header list as a `Headers` would hold it, entry by entry: names lower-cased,
 * values stripped of HTTP whitespace at either end.
 *
 * @param list The list as it came off the wire.
 * @returns A new list.
 * @throws {TypeError} On a name that is not a token or a value that is not a header value.
 */
export function checkedHeaders(list: readonly (readonly [string, string])[]): [string, string][] {
  const checked: [string, string][] = new Array(list.length);
  for (let i = 0; i < list.length; i++) {
    const name = list[i][0];
    let value = list[i][1];
    if (!TOKEN.test(name)) throw new TypeError(`Invalid header name: ${JSON.stringify(name)}`);
    if (value.length > 0 && (isEdgeSpace(value, 0) || isEdgeSpace(value, value.length - 1))) {
      value = value.replace(EDGE_WHITESPACE, "");
    }
    if (FORBIDDEN_IN_VALUE.test(value)) {
      throw new TypeError(`Invalid header value for ${JSON.stringify(name)}`);
    }
    checked[i] = [name.toLowerCase(), value];
  }
  return checked;
}

function isEdgeSpace(value: string, at: number): boolean {
  const code = value.charCodeAt(at);
  return code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d;
}
