/**
 * The agent's tunnel to a local HTTP server.
 *
 * Not `fetch`: `fetch` resolves and re-encodes the target, turns a fixed-length upload
 * into a chunked one (Deno), adds `User-Agent`, `Accept`, `Accept-Encoding` and
 * `Accept-Language` when the caller sent none, and decodes compressed bodies. A proxy must
 * do none of that: its own client (`_upstream_client.ts`) writes the request line, the
 * headers and the framing it is given.
 *
 * @module
 */

import type { Handler, HandlerInfo } from "../types.ts";
import { connectionOptions, isHopByHop, withoutHopByHopList } from "../_hop_by_hop.ts";
import { Cancel } from "../connection/_cancel.ts";
import { headerList } from "../connection/_header_list.ts";
import {
  type IncomingParts,
  type OutgoingParts,
  responseOf,
  withParts,
} from "../connection/_parts_handler.ts";
import { textBytes } from "../protocol/_small_bytes.ts";
import { mapResponseListPaths, type PathMap } from "../_path_rewrite.ts";
import { UpstreamClient, type UpstreamResponse } from "./_upstream_client.ts";

/** Options for {@linkcode tunnelHandler}. */
export interface TunnelOptions {
  /**
   * Make a `Location` or cookie `Path` under the upstream's base URL relative to it.
   * Default `true`.
   */
  rewrite?: boolean;
}

/** Statuses whose responses have no body (RFC 9110 §6.4.1). */
const NO_BODY_STATUS = new Set([204, 205, 304]);

/** A JSON answer, as `Response.json()` makes it. */
function jsonParts(status: number, body: unknown): OutgoingParts {
  return {
    status,
    statusText: "",
    headers: [["content-type", "application/json"]],
    body: textBytes(JSON.stringify(body)),
    withoutLength: false,
  };
}

/** An upstream's failure to answer, as the caller sees it. */
function unavailable(origin: string, error: unknown): OutgoingParts {
  return jsonParts(502, {
    error: "upstream_unavailable",
    message: `Cannot reach ${origin}: ${(error as Error).message}`,
  });
}

/**
 * The target as it is written: each UTF-8 byte as one latin1 character, so that a raw `é`
 * in the caller's target reaches the upstream as the same two bytes.
 */
function wireTarget(target: string): string {
  // deno-lint-ignore no-control-regex
  if (/^[\x00-\x7f]*$/.test(target)) return target;
  let out = "";
  for (const byte of new TextEncoder().encode(target)) out += String.fromCharCode(byte);
  return out;
}

/**
 * A handler that forwards every request to a local HTTP server: the method, the target as
 * the peer sent it (`info.target`, after the upstream's base path), the headers in the order
 * they came (a repeated name joined as `Headers` joins it) less hop-by-hop ones and `Expect`,
 * and the body with its framing — a `Content-Length` upload stays one, a chunked one stays
 * chunked, a bodyless request gets neither. `Host` is the upstream's, unless the request
 * brings one (a gateway with `preserveHost`). Nothing is added. The upstream's status,
 * headers and still-encoded body come back as they are, except that a `Location` or cookie
 * `Path` under the upstream's base URL is made relative to it, so that its address never
 * leaks and the gateway can mount it. Interim (1xx) answers are not passed on. An
 * unreachable upstream, one whose answer is not valid HTTP/1.1 (or could be read two ways,
 * as with both `Transfer-Encoding` and `Content-Length`), or one that answers with a status
 * outside 200–599, answers 502 `{ error: "upstream_unavailable", message }`.
 *
 * Sockets to the upstream are kept alive between requests. A request that finds a kept-alive
 * socket closed before any answer (the upstream timed it out as the request went) is sent
 * once more on a new socket if its method is idempotent and its body was not streamed.
 *
 * Served on a connection, it takes the request's parts as they came, with no `Request` or
 * `Response` made between (see `connection/_parts_handler.ts`); called as a function, it is
 * an ordinary handler and does the same.
 *
 * @example Usage
 * ```ts ignore
 * import { tunnelHandler } from "@swaggersocket/swaggersocket/agent";
 *
 * connection.serve(tunnelHandler("http://127.0.0.1:3000"));
 * ```
 *
 * @param upstream The upstream's base URL; a path in it prefixes every request's path.
 * @param options `rewrite: false` leaves `Location` and `Set-Cookie` as the upstream sent them.
 * @returns A handler for `connection.serve()`.
 * @throws {TypeError} If `upstream` is not an http: or https: URL.
 */
export function tunnelHandler(upstream: string | URL, options: TunnelOptions = {}): Handler {
  const base = new URL(upstream);
  const secure = base.protocol === "https:";
  if (!secure && base.protocol !== "http:") {
    throw new TypeError(`Cannot tunnel to ${base.protocol} URLs: use http: or https:`);
  }
  const prefix = base.pathname.replace(/\/+$/, "");
  const client = new UpstreamClient(base);
  const paths: PathMap | undefined = options.rewrite === false
    ? undefined
    : { origin: base.origin, from: `${prefix}/`, to: "/" };

  /** The upstream's answer as the caller gets it. */
  const answered = (method: string, { head, body }: UpstreamResponse): OutgoingParts => {
    const { status, statusText, rawHeaders: pairs } = head;
    // A status no `Response` can carry (the parser took 100–999, the reason without controls).
    if (status > 599) {
      if (body instanceof ReadableStream) body.cancel().catch(() => {});
      return unavailable(base.origin, new TypeError(`Invalid status ${status} ${statusText}`));
    }
    const named: [string, string][] = [];
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      named.push([pairs[i].toLowerCase(), pairs[i + 1]]);
    }
    const kept = withoutHopByHopList(named);
    const length = kept.some(([name]) => name === "content-length");
    if (paths) mapResponseListPaths(kept, paths);
    const bodiless = method === "HEAD" || NO_BODY_STATUS.has(status);
    if (bodiless && body instanceof ReadableStream) body.cancel().catch(() => {});
    return {
      status,
      statusText,
      headers: kept,
      body: bodiless ? null : body,
      // An upstream that streamed without a length is relayed so (see `_relayed.ts`).
      withoutLength: !length,
    };
  };

  /** The tunnel on the wire's parts: what a connection's responder calls. */
  const tunnel = async (request: IncomingParts): Promise<OutgoingParts> => {
    const { method, target, headers, body, cancel } = request;
    if (!target.startsWith("/")) {
      return jsonParts(400, { error: "bad_request", message: `Cannot tunnel target ${target}` });
    }
    let sent: Promise<UpstreamResponse>;
    try {
      sent = client.request({
        method,
        target: wireTarget(prefix + target),
        headers: upstreamFields(headers, base.host),
        body,
        cancel,
      });
    } catch (error) {
      return jsonParts(400, { error: "bad_request", message: (error as Error).message });
    }
    try {
      return answered(method, await sent);
    } catch (error) {
      if (cancel.aborted) throw cancel.reason;
      return unavailable(base.origin, error);
    }
  };

  return withParts(async (request: Request, info: HandlerInfo): Promise<Response> => {
    const cancel = new Cancel();
    const signal = request.signal;
    if (signal.aborted) cancel.abort(signal.reason);
    else signal.addEventListener("abort", () => cancel.abort(signal.reason), { once: true });
    return responseOf(
      await tunnel({
        method: request.method,
        target: info.target,
        headers: headerList(request.headers),
        body: request.body ?? info.body,
        cancel,
      }),
    );
  }, tunnel);
}

/** Up to this many names, a repeated one is found by a scan of those before; past it, by a `Map`. */
const SCANNED = 16;

/**
 * The request's header list as the upstream gets it: names lower-cased, hop-by-hop ones and
 * `Expect` left out, a repeated name joined as a `Headers` joins it where the first came, and
 * `Host` the upstream's unless the request brings one. For the usual few headers, no `Map` and
 * no copy of a field whose name is lower-case already: this runs on every request.
 */
function upstreamFields(headers: IncomingParts["headers"], host: string): [string, string][] {
  const listed = connectionOptions(joined(headers, "connection"));
  const out: [string, string][] = [];
  let index: Map<string, number> | undefined;
  let hasHost = false;
  for (const field of headers) {
    const name = field[0].toLowerCase();
    if (name === "expect" || isHopByHop(name, listed)) continue;
    const at = index === undefined ? scan(out, name) : index.get(name) ?? -1;
    if (at >= 0) {
      out[at] = [name, `${out[at][1]}, ${field[1]}`];
      continue;
    }
    if (name === "host") hasHost = true;
    if (index === undefined && out.length === SCANNED) {
      index = new Map(out.map(([known], i) => [known, i]));
    }
    index?.set(name, out.length);
    // The client only reads the list: a field as it came is as good as a copy.
    out.push(name === field[0] ? field as [string, string] : [name, field[1]]);
  }
  if (!hasHost) out.push(["host", host]);
  return out;
}

/** Where `name` is in `list`, or -1. */
function scan(list: [string, string][], name: string): number {
  for (let i = 0; i < list.length; i++) if (list[i][0] === name) return i;
  return -1;
}

/** The values of every `name` header in a list, joined as a `Headers` joins them. */
function joined(headers: IncomingParts["headers"], name: string): string | null {
  let value: string | null = null;
  for (const [given, one] of headers) {
    // The length first: most names are not it, and lower-casing each costs (Bun).
    if (given.length === name.length && given.toLowerCase() === name) {
      value = value === null ? one : `${value}, ${one}`;
    }
  }
  return value;
}
