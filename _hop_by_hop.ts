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
 * The header names a `Connection` header lists (lowercase): hop-by-hop too.
 *
 * @param value The `Connection` value (several fields joined with `,`), or `null`.
 * @returns The names, or `undefined` when there are none.
 */
export function connectionOptions(value: string | null): Set<string> | undefined {
  if (!value) return undefined;
  let names: Set<string> | undefined;
  for (const name of value.split(",")) {
    const trimmed = name.trim().toLowerCase();
    if (trimmed) (names ??= new Set()).add(trimmed);
  }
  return names;
}

/**
 * Whether a header only concerns one hop: the fixed set, `proxy-*`, or one that `Connection`
 * lists.
 *
 * @param name The header name, lowercase.
 * @param listed What {@linkcode connectionOptions} found.
 */
export function isHopByHop(name: string, listed: Set<string> | undefined): boolean {
  return HOP_BY_HOP.has(name) || name.startsWith("proxy-") || (listed?.has(name) ?? false);
}

/**
 * A copy of `headers` without hop-by-hop headers: the fixed set (`connection`,
 * `keep-alive`, `proxy-*`, `te`, `trailer`, `transfer-encoding`, `upgrade`) and any
 * header named in `Connection`. One pass over `headers` (Deno sorts a copy of the list on
 * every iteration).
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
  const listed = connectionOptions(headers.get("connection"));
  const out = new Headers();
  headers.forEach((value, name) => {
    if (!isHopByHop(name, listed)) out.append(name, value);
  });
  return out;
}

/**
 * A header list without hop-by-hop headers: what {@linkcode withoutHopByHop} leaves out of a
 * `Headers`, for a list whose names are lower-case already (a peer's answer as the
 * connection checked it, an upstream's as the tunnel read it). Every `Connection` entry's options count.
 *
 * @param list The list.
 * @returns The list itself if nothing goes, else a new one.
 */
export function withoutHopByHopList(list: [string, string][]): [string, string][] {
  let listed: Set<string> | undefined;
  let drop = false;
  for (let i = 0; i < list.length; i++) {
    const name = list[i][0];
    if (name === "connection") {
      for (const option of connectionOptions(list[i][1]) ?? []) (listed ??= new Set()).add(option);
    }
    drop ||= HOP_BY_HOP.has(name) || name.startsWith("proxy-");
  }
  if (!drop && listed === undefined) return list;
  return list.filter(([name]) => !isHopByHop(name, listed));
}
