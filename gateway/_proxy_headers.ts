/**
 * The headers that cross the gateway: what it drops (hop-by-hop, its own credential,
 * `Expect`) and what it adds (`X-Forwarded-*`, `Forwarded`, `Via`), as nginx's
 * `proxy_pass` with the usual `proxy_set_header` lines does.
 *
 * @module
 */

import { withoutHopByHop } from "../_hop_by_hop.ts";

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
 *
 * @param headers The caller's request headers.
 * @param hop What the gateway knows of the caller.
 * @returns New headers for the agent.
 */
export function agentRequestHeaders(headers: Headers, hop: Hop): Headers {
  const out = withoutHopByHop(headers);
  out.delete("expect");
  if (hop.credentialHeader) out.delete(hop.credentialHeader);
  if (!hop.preserveHost) out.delete("host");
  const trusted = hop.trusted;
  const priorFor = trusted ? headers.get("x-forwarded-for") : null;
  if (hop.clientAddr !== "" || priorFor !== null) {
    const chain = [priorFor, hop.clientAddr].filter((part) => part);
    out.set("x-forwarded-for", chain.join(", "));
  } else {
    out.delete("x-forwarded-for");
  }
  const host = (trusted && headers.get("x-forwarded-host")) || hop.host;
  out.set("x-forwarded-host", host);
  out.set("x-forwarded-proto", (trusted && headers.get("x-forwarded-proto")) || hop.proto);
  out.set("x-forwarded-prefix", hop.prefix);
  const element = `for=${forwardedNode(hop.clientAddr)};host=${
    forwardedValue(hop.host)
  };proto=${hop.proto}`;
  const priorForwarded = trusted ? headers.get("forwarded") : null;
  out.set("forwarded", priorForwarded ? `${priorForwarded}, ${element}` : element);
  const via = headers.get("via");
  out.set("via", via ? `${via}, ${VIA}` : VIA);
  return out;
}
