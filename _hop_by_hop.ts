/**
 * Hop-by-hop headers (RFC 9110 §7.6.1): what a proxy never forwards, in either direction.
 * The gateway drops them from requests and responses, and so does the agent's tunnel.
 *
 * @module
 */

/** Headers that only concern one hop (RFC 9110 §7.6.1), never forwarded. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * A copy of `headers` without hop-by-hop headers: the fixed set (`connection`,
 * `keep-alive`, `proxy-*`, `te`, `trailer`, `transfer-encoding`, `upgrade`) and any
 * header named in `Connection`.
 *
 * @example Usage
 * ```ts
 * import { withoutHopByHop } from "./_hop_by_hop.ts";
 *
 * const headers = withoutHopByHop(new Headers({ connection: "x-trace", "x-trace": "1", accept: "*\/*" }));
 * console.log([...headers.keys()]); // ["accept"]
 * ```
 *
 * @param headers The headers of a request or response.
 * @returns A new `Headers` without them.
 */
export function withoutHopByHop(headers: Headers): Headers {
  const out = new Headers(headers);
  const listed = headers.get("connection");
  if (listed) {
    for (const name of listed.split(",")) {
      const trimmed = name.trim().toLowerCase();
      if (trimmed) out.delete(trimmed);
    }
  }
  for (const name of [...out.keys()]) {
    if (HOP_BY_HOP.has(name) || name.startsWith("proxy-")) out.delete(name);
  }
  return out;
}
