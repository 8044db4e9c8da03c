/**
 * The headers that cross the gateway: what it drops (hop-by-hop, its own credential,
 * `Expect`) and what it adds (`X-Forwarded-*`, `Forwarded`, `Via`), as nginx's
 * `proxy_pass` with the usual `proxy_set_header` lines does.
 *
 * @module
 */

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
/** A `Forwarded` value that needs no quotes (RFC 7239 §4: a token). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** A `Forwarded` parameter value: a token as it is, anything else quoted. */
function forwardedValue(value: string): string {
  return TOKEN.test(value) ? value : `"${value.replace(/["\\]/g, "\\$&")}"`;
}

/** A node for `Forwarded: for=`: IPv6 addresses bracketed (RFC 7239 §6). */
function forwardedNode(address: string): string {
  if (address === "") return "unknown";
  return forwardedValue(address.includes(":") ? `[${address}]` : address);
}

/**
 * The headers a request goes to the agent with: the caller's, less hop-by-hop ones,
 * `Expect` (the gateway's own server has answered it), the gateway's credential and,
 * unless `preserveHost`, `Host`; plus `X-Forwarded-For`, `-Host`, `-Proto`, `-Prefix`,
 * `Forwarded` and `Via`. A caller's own forwarding headers are replaced, unless it is a
 * trusted proxy: then they are appended to (`For`, `Forwarded`) or kept (`Host`, `Proto`).
 * Made in one pass over the caller's headers, as the wire's list (`connection.forward()`
 * sends it as it is: these names and values come from a `Headers` already).
 *
 * @param headers The caller's request headers.
 * @param hop What the gateway knows of the caller.
 * @returns The agent's header list: the caller's headers in their order, then the gateway's.
 */
export function agentRequestHeaders(headers: Headers, hop: Hop): [string, string][] {
  const listed = connectionOptions(headers.get("connection"));
  const list: [string, string][] = [];
  let priorFor: string | null = null;
  let priorHost: string | null = null;
  let priorProto: string | null = null;
  let priorForwarded: string | null = null;
  let via: string | null = null;
  headers.forEach((value, name) => {
    if (isHopByHop(name, listed)) return;
    switch (name) {
      case "expect":
      case "x-forwarded-prefix":
        return;
      case "host":
        if (hop.preserveHost) list.push([name, value]);
        return;
      case "x-forwarded-for":
        priorFor = value;
        return;
      case "x-forwarded-host":
        priorHost = value;
        return;
      case "x-forwarded-proto":
        priorProto = value;
        return;
      case "forwarded":
        priorForwarded = value;
        return;
      case "via":
        via = value;
        return;
    }
    if (name !== hop.credentialHeader) list.push([name, value]);
  });
  const trusted = hop.trusted;
  const chainFor = trusted ? priorFor : null;
  if (hop.clientAddr !== "" || chainFor !== null) {
    const chain = [chainFor, hop.clientAddr].filter((part) => part);
    list.push(["x-forwarded-for", chain.join(", ")]);
  }
  list.push(["x-forwarded-host", (trusted && priorHost) || hop.host]);
  list.push(["x-forwarded-proto", (trusted && priorProto) || hop.proto]);
  list.push(["x-forwarded-prefix", hop.prefix]);
  const element = `for=${forwardedNode(hop.clientAddr)};host=${
    forwardedValue(hop.host)
  };proto=${hop.proto}`;
  const chainForwarded = trusted ? priorForwarded : null;
  list.push(["forwarded", chainForwarded ? `${chainForwarded}, ${element}` : element]);
  list.push(["via", via ? `${via}, ${VIA}` : VIA]);
  return wireList(list);
}
