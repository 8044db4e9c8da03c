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
import { Cancel } from "../connection/_cancel.ts";
import { headerList } from "../connection/_header_list.ts";
import {
  type IncomingParts,
  type OutgoingParts,
  responseOf,
  withParts,
} from "../connection/_parts_handler.ts";
import { textBytes } from "../protocol/_small_bytes.ts";
import { drained } from "../runtime/_drained.ts";
import { mapResponseListPaths, type PathMap } from "../_path_rewrite.ts";

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

/** What `Response` takes as a reason phrase (RFC 9110 §15: no control characters). */
const REASON_PHRASE = /^[\t\x20-\x7e\x80-\xff]*$/;

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

/** The body of a `node:http` response that is complete: what it holds, read at once. */
function wholeBody(response: IncomingMessage): Uint8Array {
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for (let chunk: Uint8Array | null; (chunk = response.read()) !== null;) {
    chunks.push(chunk);
    bytes += chunk.byteLength;
  }
  // Flowing to its end gives the socket back to the keep-alive pool.
  response.resume();
  if (chunks.length === 1) {
    const [only] = chunks;
    return new Uint8Array(only.buffer, only.byteOffset, only.byteLength);
  }
  const body = new Uint8Array(bytes);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
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
 * the peer sent it (`info.target`, after the upstream's base path), the headers in the order
 * they came (a repeated name joined as `Headers` joins it) less hop-by-hop ones and `Expect`,
 * and the body with its framing — a `Content-Length` upload stays one, a chunked one stays
 * chunked, a bodyless request gets neither. `Host` is the upstream's, unless the request
 * brings one (a gateway with `preserveHost`). Nothing is added. The upstream's status,
 * headers and still-encoded body come back as they are, except that a `Location` or cookie
 * `Path` under the upstream's base URL is made relative to it, so that its address never
 * leaks and the gateway can mount it. An unreachable upstream, or one that answers with a
 * status outside 200–599, answers 502 `{ error: "upstream_unavailable", message }`.
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
  const send = secure ? httpsRequest : httpRequest;
  const agent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  const paths: PathMap | undefined = options.rewrite === false
    ? undefined
    : { origin: base.origin, from: `${prefix}/`, to: "/" };

  /** The tunnel on the wire's parts: what a connection's responder calls. */
  const tunnel = (request: IncomingParts): Promise<OutgoingParts> => {
    const { method, target, headers, body, cancel } = request;
    if (!target.startsWith("/")) {
      return Promise.resolve(
        jsonParts(400, { error: "bad_request", message: `Cannot tunnel target ${target}` }),
      );
    }
    // An object, not a raw list: with a list, `node:http` writes the head at once, before
    // `useChunkedEncodingByDefault` below can keep it from framing a bodyless request.
    // Repeated names are joined as a `Headers` joins them.
    const fields: Record<string, string> = {};
    const listed = connectionOptions(joined(headers, "connection"));
    for (const [given, value] of headers) {
      const name = given.toLowerCase();
      if (name === "expect" || isHopByHop(name, listed)) continue;
      const before = fields[name];
      fields[name] = before === undefined ? value : `${before}, ${value}`;
    }
    fields.host ??= base.host;
    if (body !== null && fields["content-length"] === undefined) {
      fields["transfer-encoding"] = "chunked";
    }
    return new Promise<OutgoingParts>((resolve, reject) => {
      let outgoing: ReturnType<typeof httpRequest>;
      try {
        outgoing = send({
          agent,
          protocol: base.protocol,
          hostname: base.hostname.replace(/^\[|\]$/g, ""),
          port: base.port || undefined,
          method,
          path: wireTarget(prefix + target),
          headers: fields,
        });
      } catch (error) {
        resolve(jsonParts(400, { error: "bad_request", message: (error as Error).message }));
        return;
      }
      // No framing of its own: a bodyless POST stays without `Content-Length: 0`.
      outgoing.useChunkedEncodingByDefault = false;
      // Settled here, not on the `error` that `destroy` should bring: Deno's `node:http`
      // emits none for a request on a reused keep-alive socket.
      const onAbort = (reason: unknown): void => {
        reject(reason);
        outgoing.destroy(reason as Error);
      };
      if (cancel.aborted) return onAbort(cancel.reason);
      cancel.listen(onAbort);
      outgoing.on("error", (error) => {
        cancel.listen(undefined);
        if (cancel.aborted) reject(cancel.reason);
        else resolve(unavailable(base.origin, error));
      });
      outgoing.on("response", (response) => {
        cancel.listen(undefined);
        const status = response.statusCode ?? 502;
        const statusText = response.statusMessage ?? "";
        if (status < 200 || status > 599 || !REASON_PHRASE.test(statusText)) {
          response.destroy();
          resolve(
            unavailable(base.origin, new TypeError(`Invalid status ${status} ${statusText}`)),
          );
          return;
        }
        const pairs = response.rawHeaders;
        let listed: Set<string> | undefined;
        for (let i = 0; i + 1 < pairs.length; i += 2) {
          if (pairs[i].toLowerCase() !== "connection") continue;
          for (const name of connectionOptions(pairs[i + 1]) ?? []) {
            (listed ??= new Set()).add(name);
          }
        }
        const kept: [string, string][] = [];
        let length = false;
        for (let i = 0; i + 1 < pairs.length; i += 2) {
          const name = pairs[i].toLowerCase();
          if (isHopByHop(name, listed)) continue;
          if (name === "content-length") length = true;
          kept.push([name, pairs[i + 1]]);
        }
        if (paths) mapResponseListPaths(kept, paths);
        const answer: OutgoingParts = {
          status,
          statusText,
          headers: kept,
          body: null,
          // An upstream that streamed without a length is relayed so (see `_relayed.ts`).
          withoutLength: !length,
        };
        if (method === "HEAD" || NO_BODY_STATUS.has(status)) {
          response.resume();
          resolve(answer);
          return;
        }
        // `node:http` parses the rest of what the socket gave before this microtask: a body
        // that came with its head is complete by then, and goes whole, with no stream.
        queueMicrotask(() => {
          answer.body = response.complete ? wholeBody(response) : bodyStream(response);
          resolve(answer);
        });
      });
      if (body === null) outgoing.end();
      else if (body instanceof Uint8Array) outgoing.end(body);
      else pump(body, outgoing);
    });
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
