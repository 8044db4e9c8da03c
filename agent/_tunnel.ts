/**
 * The agent's tunnel to a local HTTP server, on `node:http`.
 *
 * Not `fetch`: `fetch` resolves and re-encodes the target, turns a fixed-length upload
 * into a chunked one (Deno), adds `User-Agent`, `Accept`, `Accept-Encoding` and
 * `Accept-Language` when the caller sent none, and decodes compressed bodies. A proxy must
 * do none of that, and `node:http`, on Deno and Bun alike, writes the request line, the
 * headers and the framing it is given.
 *
 * @module
 */

import { Agent as HttpAgent, type IncomingMessage, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { Handler, HandlerInfo } from "../types.ts";
import { connectionOptions, isHopByHop } from "../_hop_by_hop.ts";
import { relayedWithoutLength } from "../connection/_relayed.ts";
import { drained } from "../runtime/_drained.ts";
import { mapResponsePaths, type PathMap } from "../_path_rewrite.ts";

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
/** Bytes of the upstream's response read ahead of the gateway. */
const READ_AHEAD = 64 * 1024;

/** An upstream's failure to answer, as the caller sees it. */
function unavailable(origin: string, error: unknown): Response {
  return Response.json({
    error: "upstream_unavailable",
    message: `Cannot reach ${origin}: ${(error as Error).message}`,
  }, { status: 502 });
}

/**
 * The target as `node:http` writes it: each UTF-8 byte as one latin1 character, so that a
 * raw `é` in the caller's target reaches the upstream as the same two bytes.
 */
function wireTarget(target: string): string {
  // deno-lint-ignore no-control-regex
  if (/^[\x00-\x7f]*$/.test(target)) return target;
  let out = "";
  for (const byte of new TextEncoder().encode(target)) out += String.fromCharCode(byte);
  return out;
}

/** A `node:http` response body as a web stream, read no further ahead than the reader. */
function bodyStream(response: IncomingMessage): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      response.on("data", (chunk: Uint8Array) => {
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 0) <= 0) response.pause();
      });
      response.on("end", () => controller.close());
      response.on("error", (error) => controller.error(error));
      // A connection lost mid-body ends the stream with an error, never as if complete.
      response.on("close", () => {
        if (!response.complete) controller.error(new Error("The upstream closed mid-body"));
      });
    },
    pull() {
      response.resume();
    },
    cancel() {
      response.destroy();
    },
  }, { highWaterMark: READ_AHEAD, size: (chunk) => chunk.byteLength });
}

/** Writes a web stream into a `node:http` request, waiting for `drain`. */
async function pump(
  body: ReadableStream<Uint8Array>,
  request: ReturnType<typeof httpRequest>,
): Promise<void> {
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (request.destroyed) return;
      if (!request.write(value)) await drained(request);
    }
    request.end();
  } catch (error) {
    request.destroy(error as Error);
  } finally {
    reader.releaseLock();
  }
}

/**
 * A handler that forwards every request to a local HTTP server: the method, the target as
 * the peer sent it (`info.target`, after the upstream's base path), the headers less
 * hop-by-hop ones and `Expect`, and the body with its framing — a `Content-Length` upload
 * stays one, a chunked one stays chunked, a bodyless request gets neither. `Host` is the
 * upstream's, unless the request brings one (a gateway with `preserveHost`). Nothing is
 * added. The upstream's status, headers and still-encoded body come back as they are,
 * except that a `Location` or cookie `Path` under the upstream's base URL is made relative
 * to it, so that its address never leaks and the gateway can mount it. An unreachable
 * upstream answers 502 `{ error: "upstream_unavailable", message }`.
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
  const send = secure ? httpsRequest : httpRequest;
  const agent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  const paths: PathMap | undefined = options.rewrite === false
    ? undefined
    : { origin: base.origin, from: `${prefix}/`, to: "/" };
  return (request: Request, info: HandlerInfo): Promise<Response> => {
    const target = info.target;
    if (!target.startsWith("/")) {
      return Promise.resolve(
        Response.json({ error: "bad_request", message: `Cannot tunnel target ${target}` }, {
          status: 400,
        }),
      );
    }
    // An object, not a raw list: with a list, `node:http` writes the head at once, before
    // `useChunkedEncodingByDefault` below can keep it from framing a bodyless request.
    const fields: Record<string, string> = {};
    const listed = connectionOptions(request.headers.get("connection"));
    request.headers.forEach((value, name) => {
      if (name !== "expect" && !isHopByHop(name, listed)) fields[name] = value;
    });
    fields.host ??= base.host;
    const body = request.body ?? info.body;
    if (body !== null && fields["content-length"] === undefined) {
      fields["transfer-encoding"] = "chunked";
    }
    return new Promise<Response>((resolve, reject) => {
      let outgoing: ReturnType<typeof httpRequest>;
      try {
        outgoing = send({
          agent,
          protocol: base.protocol,
          hostname: base.hostname.replace(/^\[|\]$/g, ""),
          port: base.port || undefined,
          method: request.method,
          path: wireTarget(prefix + target),
          headers: fields,
        });
      } catch (error) {
        resolve(Response.json({ error: "bad_request", message: (error as Error).message }, {
          status: 400,
        }));
        return;
      }
      // No framing of its own: a bodyless POST stays without `Content-Length: 0`.
      outgoing.useChunkedEncodingByDefault = false;
      // Settled here, not on the `error` that `destroy` should bring: Deno's `node:http`
      // emits none for a request on a reused keep-alive socket.
      const onAbort = (): void => {
        reject(request.signal.reason);
        outgoing.destroy(request.signal.reason);
      };
      if (request.signal.aborted) return onAbort();
      request.signal.addEventListener("abort", onAbort, { once: true });
      outgoing.on("error", (error) => {
        request.signal.removeEventListener("abort", onAbort);
        if (request.signal.aborted) reject(request.signal.reason);
        else resolve(unavailable(base.origin, error));
      });
      outgoing.on("response", (response) => {
        request.signal.removeEventListener("abort", onAbort);
        const status = response.statusCode ?? 502;
        const pairs = response.rawHeaders;
        let listed: Set<string> | undefined;
        for (let i = 0; i + 1 < pairs.length; i += 2) {
          if (pairs[i].toLowerCase() !== "connection") continue;
          for (const name of connectionOptions(pairs[i + 1]) ?? []) {
            (listed ??= new Set()).add(name);
          }
        }
        const kept = new Headers();
        for (let i = 0; i + 1 < pairs.length; i += 2) {
          if (!isHopByHop(pairs[i].toLowerCase(), listed)) kept.append(pairs[i], pairs[i + 1]);
        }
        if (paths) mapResponsePaths(kept, paths);
        const hasBody = request.method !== "HEAD" && !NO_BODY_STATUS.has(status);
        if (!hasBody) response.resume();
        try {
          const relayed = new Response(hasBody ? bodyStream(response) : null, {
            status,
            statusText: response.statusMessage ?? "",
            headers: kept,
          });
          // An upstream that streamed without a length is relayed so (see `_relayed.ts`).
          resolve(kept.has("content-length") ? relayed : relayedWithoutLength(relayed));
        } catch (error) {
          response.destroy();
          resolve(unavailable(base.origin, error));
        }
      });
      if (body === null) outgoing.end();
      else pump(body, outgoing);
    });
  };
}
