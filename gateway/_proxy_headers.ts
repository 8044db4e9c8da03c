/**
 * The headers that cross the gateway: what it drops (hop-by-hop, its own credential,
 * `Expect`) and what it adds (`X-Forwarded-*`, `Forwarded`, `Via`), as nginx's
 * `proxy_pass` with the usual `proxy_set_header` lines does.
 *
 * @module
 */

import { TOKEN } from "../_http_token.ts";
import { connectionOptions, isHopByHop } from "../_hop_by_hop.ts";
import { wireList } from "../connection/_header_list.ts";

/** What the gateway knows of the hop a request came in on. */
export interface Hop {
  /** The caller's IP address (`""` if unknown). */
  clientAddr: string;
  /** The caller's `Host`. */
  host: string;
  /** The scheme the caller used. */
  proto: "http" | "https";
  /** Where the agent is mounted on the gateway: `/agents/{key}`, as the caller wrote it. */
  prefix: string;
  /** Whether the caller is a trusted proxy, whose forwarding headers are extended, not replaced. */
  trusted: boolean;
  /** Whether the agent gets the caller's `Host` (else none: a tunnel then sends its upstream's). */
  preserveHost: boolean;
  /** The header that carried the gateway's own credential (not forwarded), or `""`. */
  credentialHeader: string;
}

/** What the gateway calls itself in `Via`. */
const VIA = "1.1 swaggersocket";

/** A `Forwarded` parameter value: a token as it is (RFC 7239 §4), anything else quoted. */
function forwardedValue(value: string): string {
  return TOKEN.test(value) ? value : `"${value.replace(/["\\]/g, "\\$&")}"`;
}

/** A node for `Forwarded: for=`: IPv6 addresses bracketed (RFC 7239 §6). */
function forwardedNode(address: string): string {
  if (address === "") return "unknown";
  return forwardedValue(address.includes(":") ? `[${address}]` : address);
}

/** A header seen more than once, as a `Headers` joins it. */
function joined(before: string | null, value: string): string {
  return before === null ? value : `${before}, ${value}`;
}

/** The last `Forwarded` element made, and what it was made of: a kept-alive caller repeats them. */
let lastElement = { clientAddr: "", host: "", proto: "", element: "" };

/** This hop's `Forwarded` element (RFC 7239 §4). */
function forwardedElement(hop: Hop): string {
  const last = lastElement;
  if (last.clientAddr === hop.clientAddr && last.host === hop.host && last.proto === hop.proto) {
    return last.element;
  }
  const element = `for=${forwardedNode(hop.clientAddr)};host=${
    forwardedValue(hop.host)
  };proto=${hop.proto}`;
  lastElement = { clientAddr: hop.clientAddr, host: hop.host, proto: hop.proto, element };
  return element;
}

/**
 * The headers a request goes to the agent with: the caller's, less hop-by-hop ones,
 * `Expect` (the gateway's own server has answered it), the gateway's credential and,
 * unless `preserveHost`, `Host`; plus `X-Forwarded-For`, `-Host`, `-Proto`, `-Prefix`,
 * `Forwarded` and `Via`. A caller's own forwarding headers are replaced, unless it is a
 * trusted proxy: then they are appended to (`For`, `Forwarded`) or kept (`Host`, `Proto`).
 * Made in one pass over the caller's header lines as they came (`node:http`'s
 * `rawHeaders`: valid, trimmed, in order, repeats apart), with names lower-cased, as the
 * wire's list (`connection.forward()` sends it as it is): no `Headers` is iterated.
 *
 * @param fields The caller's header lines: names and values in turn.
 * @param hop What the gateway knows of the caller.
 * @returns The agent's header list: the caller's headers in their order, then the gateway's.
 */
export function agentRequestHeaders(fields: readonly string[], hop: Hop): [string, string][] {
  // `Connection` may come after a header it lists.
  let listed: Set<string> | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i].length !== 10 || fields[i].toLowerCase() !== "connection") continue;
    for (const option of connectionOptions(fields[i + 1]) ?? []) (listed ??= new Set()).add(option);
  }
  const list: [string, string][] = [];
  let priorFor: string | null = null;
  let priorHost: string | null = null;
  let priorProto: string | null = null;
  let priorForwarded: string | null = null;
  let via: string | null = null;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i].toLowerCase();
    const value = fields[i + 1];
    if (isHopByHop(name, listed)) continue;
    switch (name) {
      case "expect":
      case "x-forwarded-prefix":
        continue;
      case "host":
        if (hop.preserveHost) list.push([name, value]);
        continue;
      case "x-forwarded-for":
        priorFor = joined(priorFor, value);
        continue;
      case "x-forwarded-host":
        priorHost = joined(priorHost, value);
        continue;
      case "x-forwarded-proto":
        priorProto = joined(priorProto, value);
        continue;
      case "forwarded":
        priorForwarded = joined(priorForwarded, value);
        continue;
      case "via":
        via = joined(via, value);
        continue;
    }
    if (name !== hop.credentialHeader) list.push([name, value]);
  }
  const trusted = hop.trusted;
  const chainFor = trusted ? priorFor : null;
  if (hop.clientAddr !== "" || chainFor) {
    const chain = !chainFor
      ? hop.clientAddr
      : hop.clientAddr === ""
      ? chainFor
      : `${chainFor}, ${hop.clientAddr}`;
    list.push(["x-forwarded-for", chain]);
  }
  list.push(["x-forwarded-host", (trusted && priorHost) || hop.host]);
  list.push(["x-forwarded-proto", (trusted && priorProto) || hop.proto]);
  list.push(["x-forwarded-prefix", hop.prefix]);
  const element = forwardedElement(hop);
  const chainForwarded = trusted ? priorForwarded : null;
  list.push(["forwarded", chainForwarded ? `${chainForwarded}, ${element}` : element]);
  list.push(["via", via ? `${via}, ${VIA}` : VIA]);
  return wireList(list);
}
