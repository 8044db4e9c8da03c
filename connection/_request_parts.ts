/**
 * What `connection.fetch()` sends for a request, without building a `Request` when it
 * does not have to.
 *
 * On Deno a `new Request()` (URL parsing, webidl conversion of the headers, a body
 * stream) costs more than the rest of a small exchange. For the common call — a string
 * or `URL` and a body that is absent, a string or bytes — this produces exactly what
 * `new Request(url, init)` would send, and the bytes themselves instead of a stream to
 * pump. Anything else takes the standard path through `Request`.
 *
 * @module
 */

import { TOKEN } from "../_http_token.ts";
import { CANCEL, type Cancel } from "./_cancel.ts";
import { headerList, isWireList } from "./_header_list.ts";
import type { RequestHead } from "../protocol/payload.ts";
import { copyBytes, textBytes } from "../protocol/_small_bytes.ts";

/** A request ready for the wire. */
export interface RequestParts {
  /** The head to send. */
  head: RequestHead;
  /** The body: bytes known up front, a stream to pump, or none. */
  body: Uint8Array | ReadableStream<Uint8Array> | null;
  /** The caller's signal, if any (or the library's own `Cancel`). */
  signal: AbortSignal | Cancel | null | undefined;
  /**
   * Forwarded from an HTTP front: with other exchanges in flight it waits for the flush,
   * where the requests that arrived in the same macrotask share one message.
   */
  forwarded: boolean;
  /** Answered as parts (`AnswerParts`) rather than a `Response`: see `Connection.forwardAsParts`. */
  inParts: boolean;
}

const HAS_SCHEME = /^[a-zA-Z][a-zA-Z\d+\-.]*:/;
/** Relative URLs are resolved against this (and sent as path and query only); the receiver builds its `Request` URL on it too. */
export const PLACEHOLDER_BASE = "http://localhost";
/**
 * A relative path and query that `new URL()` leaves unchanged: characters it neither
 * encodes nor treats specially (no `\\`, `#`, spaces, quotes in the query), not `//host`.
 */
const PLAIN_TARGET = /^\/(?![/\\])[\w\-.~!$&'()*+,;=:@/%]*(\?[\w\-.~!$&()*+,;=:@/?%]*)?$/;
/** Dot segments (`/./`, `/../`, `/%2e`) are resolved by the parser: leave them to it. */
const DOT_SEGMENT = /\/(\.|%2e)/i;
const NORMALIZED = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"]);
const FORBIDDEN = new Set(["CONNECT", "TRACE", "TRACK"]);

/**
 * Whether this platform's `Request` drops forbidden request headers (`cookie`, `host`,
 * `origin`, `sec-*`, …): browsers do, Deno and Bun do not. Where it does, `fetch(url, init)`
 * takes the same path as `fetch(new Request(url, init))`, so that the two send the same.
 */
const REQUEST_DROPS_FORBIDDEN_HEADERS = !new Request("http://x/", { headers: { cookie: "a" } })
  .headers.has("cookie");

/**
 * Turns `fetch`'s arguments into what goes on the wire.
 *
 * @param input A URL (relative or absolute) or a `Request`.
 * @param init The usual `RequestInit`.
 * @returns The head, the body and the signal.
 * @throws {TypeError} Where `new Request(input, init)` would, and for a GET or HEAD with a body.
 */
export function requestParts(input: string | URL | Request, init?: RequestInit): RequestParts {
  const target = input instanceof Request ? input.url : String(input);
  const absolute = HAS_SCHEME.test(target);
  if (!(input instanceof Request)) {
    const fast = fastParts(target, absolute, init);
    if (fast) return fast;
  }
  const url = absolute ? target : new URL(target, PLACEHOLDER_BASE).href;
  const request = input instanceof Request
    ? (init ? new Request(input, init) : input)
    : new Request(url, init);
  // Bun's Request constructor accepts a GET/HEAD body, forbidden methods and methods that
  // are not tokens; the standard (and Deno) throw. A bad method would cost the peer the whole
  // connection (a protocol error), so it fails here.
  checkMethod(request.method);
  if (
    (request.method === "GET" || request.method === "HEAD") &&
    (request.body !== null || (init?.body ?? null) !== null)
  ) {
    throw new TypeError(`Request with ${request.method} method cannot have body`);
  }
  return {
    head: {
      method: request.method,
      url: wireUrl(request.url, absolute),
      headers: headerList(request.headers),
    },
    body: request.body,
    signal: init?.signal ?? request.signal,
    forwarded: false,
    inParts: false,
  };
}

/** A request sent exactly as given: see `Connection.forward`. */
export interface ForwardRequest {
  /** The method, sent as given (any token but `CONNECT`, `TRACE` and `TRACK`). */
  method: string;
  /**
   * The request target as it goes on the wire: a path and query (`/a/../b//c?`), or an
   * absolute URL. Not parsed, resolved or re-encoded; it must not contain spaces or control
   * characters, which no HTTP request line can carry.
   */
  target: string;
  /** The headers, sent as given (the receiver's `Request` may still refuse a bad one). */
  headers?: HeadersInit;
  /**
   * The body: bytes, a stream, or none. A `GET` or `HEAD` may have one too (a reverse
   * proxy carries what it was sent): the peer's handler finds it in `info.body`, since its
   * `Request` cannot hold it.
   */
  body?: Uint8Array | ReadableStream<Uint8Array> | null;
  /** Aborts the exchange, as `RequestInit.signal` does. */
  signal?: AbortSignal | null;
}

/** A {@linkcode ForwardRequest} that the library cancels with a `Cancel` of its own. */
export interface CancellableForward extends ForwardRequest {
  /** Takes the place of `signal`. */
  [CANCEL]?: Cancel;
}

/** What no request line can carry: spaces and control characters. */
// deno-lint-ignore no-control-regex
const UNSENDABLE_TARGET = /[\x00-\x20\x7f]/;

/**
 * What `connection.forward()` sends: the target and headers as given, checked only where
 * the wire or the peer's `Request` would fail on them.
 *
 * @param request The method, target, headers, body and signal.
 * @returns The head, the body and the signal.
 * @throws {TypeError} For a bad method or an empty or unsendable target.
 */
export function forwardParts(request: ForwardRequest): RequestParts {
  const method = checkMethod(request.method);
  const target = request.target;
  if (
    target.length === 0 || UNSENDABLE_TARGET.test(target) ||
    (target.charCodeAt(0) !== 0x2f && !HAS_SCHEME.test(target))
  ) {
    throw new TypeError(`Invalid target: ${JSON.stringify(target)}`);
  }
  const body = request.body ?? null;
  const given = request.headers;
  const headers = given === undefined
    ? []
    : isWireList(given)
    ? given
    : headerList(given instanceof Headers ? given : new Headers(given));
  return {
    head: { method, url: target, headers },
    body: body instanceof Uint8Array ? copyBytes(body) : body,
    signal: (request as CancellableForward)[CANCEL] ?? request.signal,
    forwarded: true,
    inParts: false,
  };
}

function checkMethod(method: string): string {
  if (!TOKEN.test(method)) throw new TypeError(`Invalid method: ${JSON.stringify(method)}`);
  if (FORBIDDEN.has(method.toUpperCase())) {
    throw new TypeError(`Forbidden method: ${method}`);
  }
  return method;
}

function wireUrl(url: string, absolute: boolean): string {
  if (absolute) return url;
  const parsed = new URL(url);
  return parsed.pathname + parsed.search;
}

/** The same result as the standard path for simple calls; `undefined` for anything else. */
function fastParts(
  target: string,
  absolute: boolean,
  init?: RequestInit,
): RequestParts | undefined {
  const raw = init?.body;
  let body: Uint8Array | null;
  let defaultType: string | undefined;
  if (raw === undefined || raw === null) {
    body = null;
  } else if (typeof raw === "string") {
    body = textBytes(raw);
    defaultType = "text/plain;charset=UTF-8";
  } else if (raw instanceof ArrayBuffer) {
    body = copyBytes(new Uint8Array(raw));
  } else if (ArrayBuffer.isView(raw)) {
    // A copy, as Request makes: the caller may reuse its buffer once fetch() returns.
    body = copyBytes(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength));
  } else {
    return undefined;
  }
  let method = checkMethod(init?.method ?? "GET");
  if (NORMALIZED.has(method.toUpperCase())) method = method.toUpperCase();
  if (body !== null && (method === "GET" || method === "HEAD")) {
    throw new TypeError(`Request with ${method} method cannot have body`);
  }
  let wire: string;
  if (PLAIN_TARGET.test(target) && !DOT_SEGMENT.test(target)) {
    // Already what the URL parser would make of it: spare the parse.
    wire = target;
  } else {
    const url = new URL(target, PLACEHOLDER_BASE);
    // Request refuses URLs with credentials; let it say so.
    if (url.username !== "" || url.password !== "") return undefined;
    wire = absolute ? url.href : url.pathname + url.search;
  }
  let headers: [string, string][];
  if (init?.headers !== undefined && REQUEST_DROPS_FORBIDDEN_HEADERS) return undefined;
  if (init?.headers === undefined) {
    headers = defaultType === undefined ? [] : [["content-type", defaultType]];
  } else {
    const filled = new Headers(init.headers);
    if (defaultType !== undefined && !filled.has("content-type")) {
      filled.set("content-type", defaultType);
    }
    headers = headerList(filled);
  }
  return {
    head: { method, url: wire, headers },
    body,
    signal: init?.signal,
    forwarded: false,
    inParts: false,
  };
}

/**
 * The handler's `Request` URL, made as `Deno.serve` makes its: a path target is joined to the
 * base, so `//host/x` stays a path (resolved against the base it would name a host, and a
 * gateway's `/agents/a//host/x` would reach agent `a` as `/x`); the URL parser still
 * resolves dot segments and `\`. Anything else (an absolute URL, `*`) is resolved.
 *
 * @param target The request head's URL.
 * @returns What to give `new Request()`.
 */
export function handlerUrl(target: string): string | URL {
  return target.charCodeAt(0) === 0x2f
    ? PLACEHOLDER_BASE + target
    : new URL(target, PLACEHOLDER_BASE);
}

/**
 * The absolute URL of a request whose wire target is `target`: as it is if absolute, else
 * resolved against {@linkcode PLACEHOLDER_BASE} by joining (the target is already a path).
 *
 * @param target The request head's URL.
 * @returns The URL a `fetch` response reports as its `url`.
 */
export function targetUrl(target: string): string {
  return HAS_SCHEME.test(target) ? target : PLACEHOLDER_BASE + target;
}
