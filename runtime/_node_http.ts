/**
 * The gateway's HTTP side: a `node:http` (or `node:https`) server, the same on Deno and on
 * Bun. A reverse proxy needs what their native servers do not hand over: the request
 * target exactly as sent (Bun's server resolves dot segments before its handler runs), the
 * body of a GET, HEAD or any request (both drop those), and a streamed response that keeps
 * its `Content-Length` (Bun's sends it chunked, oven-sh/bun#10507). Upgrades go to
 * `onUpgrade` with the raw socket.
 *
 * @module
 */

import { createServer as createHttpServer, METHODS, ServerResponse, STATUS_CODES } from "node:http";
import type { IncomingMessage, Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { Duplex } from "node:stream";
import type { Buffer } from "node:buffer";
import { plainBytes } from "./_plain_bytes.ts";
import { announcesBody } from "./_framing.ts";
import { drained } from "./_drained.ts";
import { Deadline, deadlinesOf } from "../_deadlines.ts";

/**
 * A caller's request as it arrived: what a `Request` cannot hold (a GET body, a raw target).
 * Its `signal` is made only if asked for: most requests are answered without one.
 */
export class CallerRequest {
  /**
   * Set by the handler to hear at once, with the reason, that the caller went away before
   * the whole response was sent (as `signal` says, without a listener on it).
   */
  gone: ((reason: unknown) => void) | undefined = undefined;
  /**
   * Set by the handler to hear once how the answer went: the body bytes written, the error
   * if the body failed or the caller went away before it was all sent, and the status the
   * caller got when the front sent another answer instead (a 502 for a broken length).
   */
  sent: ((bytes: number, error?: unknown, status?: number) => void) | undefined = undefined;
  /** Whether the caller went away before the whole response was sent. */
  hungUp = false;
  /** Why, once it did. */
  reason: unknown = undefined;
  #controller: AbortController | undefined = undefined;

  /**
   * @param method The method, as sent.
   * @param target The request target, byte for byte as on the request line.
   * @param fields The header lines as they came, names and values in turn (`rawHeaders`):
   *   what is forwarded, in the caller's order, and what {@linkcode field} reads (no
   *   `Headers` is made of a request: the HTTP parser has checked the lines already).
   * @param body The body, or `null` when the headers announce none (bytes: one a cluster
   *   peer sent whole).
   * @param clientAddr The caller's address (an IPv4 peer may show as `::ffff:a.b.c.d`).
   */
  constructor(
    readonly method: string,
    readonly target: string,
    readonly fields: readonly string[],
    readonly body: ReadableStream<Uint8Array> | Uint8Array | null,
    readonly clientAddr: string,
  ) {}

  /**
   * A header's value as `Headers.get` gives it: every line of that name, joined with `, `.
   *
   * @param name The name, lower-case.
   * @returns The value, or `null` if no line has that name.
   */
  field(name: string): string | null {
    const fields = this.fields;
    let value: string | null = null;
    for (let i = 0; i < fields.length; i += 2) {
      const candidate = fields[i];
      if (candidate.length === name.length && candidate.toLowerCase() === name) {
        value = value === null ? fields[i + 1] : `${value}, ${fields[i + 1]}`;
      }
    }
    return value;
  }

  /** Aborted when the caller goes away before the whole response is sent. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.hungUp) this.#controller.abort(this.reason);
    }
    return this.#controller.signal;
  }

  /** The caller went away before the whole response was sent: `signal` aborts, `gone` hears. */
  hangUp(reason: unknown): void {
    if (this.hungUp) return;
    this.hungUp = true;
    this.reason = reason;
    this.#controller?.abort(reason);
    this.gone?.(reason);
  }
}

/**
 * An answer in parts, written with no `Response` made of it: the shape of
 * `connection/_answer_parts.ts`'s `AnswerParts` (an agent's answer as the gateway forwards it),
 * which `runtime/` does not import.
 */
export interface PartsAnswer {
  /** 200–599. */
  status: number;
  /** The reason phrase (may be empty). */
  statusText: string;
  /** In order, repeated names apart; names lower-case, names and values as `Headers` takes them. */
  headers: [string, string][];
  /** The body: bytes, a stream, or none. */
  body: Uint8Array | ReadableStream<Uint8Array> | null;
}

/** The status line and headers of an answer, as `writeHead` takes them. */
interface Head {
  status: number;
  statusText: string;
  /** An object (from a `Headers`) or a flat list of names and values (from parts). */
  fields: Record<string, string | string[]> | string[];
}

/** Where and how the front listens. */
export interface HttpFrontOptions {
  hostname: string;
  port: number;
  /** PEM certificate and key: serve `https` (and `wss` upgrades). */
  tls?: { cert: string; key: string };
  /** Answers a request. */
  handler: (request: CallerRequest) => Promise<Response | PartsAnswer>;
  /**
   * Offered each request that asks to upgrade, with its socket (and the bytes read past its
   * head): returns whether it took the socket. One it does not take (an `Upgrade: h2c`, a
   * WebSocket for an agent) is answered by `handler` as an ordinary request.
   */
  onUpgrade: (request: IncomingMessage, socket: Duplex, head: Buffer) => boolean;
  /**
   * The answer to a request that `node:http`'s parser refused: with the method when it is a
   * token the parser does not know (`TRACK`, `FOO`), else `undefined` (a malformed request
   * line or header, raw non-ASCII bytes in the target).
   */
  unparsable: (method: string | undefined) => Response;
  /**
   * Milliseconds a caller's connection may take to send a complete request head, counted
   * from when it opened or its last response ended (nginx's `client_header_timeout` and
   * `keepalive_timeout` in one): then it is closed. A request being answered is not timed.
   */
  idleTimeout: number;
  /**
   * Milliseconds a caller may take nothing of a streamed answer while the front waits to
   * write more (nginx's `send_timeout`): then its connection is cut, and the answer's body
   * cancelled, which lets go of what it holds upstream.
   */
  sendTimeout: number;
}

/** A listening front. */
export interface HttpFront {
  /** The address it listens on. */
  addr: { hostname: string; port: number };
  /** Stops accepting and closes every HTTP connection (not the upgraded ones). */
  stop(): Promise<void>;
}

/**
 * Starts listening.
 *
 * @param options Where to listen and what answers.
 * @returns Once listening, the front.
 */
export async function listenHttp(options: HttpFrontOptions): Promise<HttpFront> {
  const idle = new IdleSockets(options.idleTimeout);
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    idle.busy(req.socket);
    res.on("finish", () => idle.wait(req.socket));
    serve(req, res, options);
  };
  const server: Server = options.tls
    ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, onRequest)
    : createHttpServer(onRequest);
  // Uploads may take long; heads are timed by `IdleSockets` (the runtimes ignore
  // `headersTimeout`), and so is a kept-alive socket between requests: `node:http`'s own
  // keep-alive timer would close it after 5 s whatever `idleTimeout` says, and costs a Node
  // `Timeout` per response on Deno.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 0;
  server.on(options.tls ? "secureConnection" : "connection", (socket: Duplex) => idle.wait(socket));
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    idle.busy(socket);
    socket.on("error", () => socket.destroy());
    if (!options.onUpgrade(req, socket, head)) serveOnSocket(req, socket, options);
  });
  // A CONNECT is answered like any request (an agent route says 501), and the socket closes.
  server.on("connect", (req: IncomingMessage, socket: Duplex) => {
    idle.busy(socket);
    socket.on("error", () => socket.destroy());
    serveOnSocket(req, socket, options);
  });
  server.on("clientError", (error: Error & { rawPacket?: Buffer }, socket: Duplex) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const code = (error as { code?: string }).code;
    if (code === "ERR_HTTP_REQUEST_TIMEOUT" || code === "HPE_HEADER_OVERFLOW") {
      const status = code === "HPE_HEADER_OVERFLOW" ? 431 : 408;
      socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n\r\n`);
      return;
    }
    const method = unknownMethod(error.rawPacket);
    void writeOnSocket(socket, options.unparsable(method));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : options.port;
  return {
    addr: { hostname: options.hostname, port },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * Closes connections that send no request head in time (see `idleTimeout`). Each socket's
 * deadline is an entry on the deadline heap, not a runtime timer: one is set and cancelled
 * per request, and on Deno a `setTimeout` here is a Node `Timeout`.
 */
class IdleSockets {
  readonly #timeout: number;
  readonly #deadlines = deadlinesOf();
  readonly #waiting = new WeakMap<Duplex, Deadline>();

  constructor(timeout: number) {
    this.#timeout = timeout;
  }

  /** Starts timing: the socket must bring a request head within the timeout. */
  wait(socket: Duplex): void {
    if (socket.destroyed) return;
    let deadline = this.#waiting.get(socket);
    if (deadline === undefined) {
      const timed = new Deadline(() => socket.destroy());
      this.#waiting.set(socket, deadline = timed);
      // A closed socket is timed no more (and the heap lets its timer go once empty).
      socket.once("close", () => this.#deadlines.set(timed, undefined));
    }
    this.#deadlines.set(deadline, this.#deadlines.clock.now() + this.#timeout);
  }

  /** A request arrived: it is not timed while it is answered. */
  busy(socket: Duplex): void {
    const deadline = this.#waiting.get(socket);
    if (deadline !== undefined) this.#deadlines.set(deadline, undefined);
  }
}

/**
 * Answers an upgrade or CONNECT request that is not taken, in HTTP/1.1 on its socket, which
 * then closes: `node:http` leaves such a socket to whoever listens for the event.
 */
function serveOnSocket(req: IncomingMessage, socket: Duplex, options: HttpFrontOptions): void {
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Parameters<ServerResponse["assignSocket"]>[0]);
  res.on("finish", () => socket.end());
  // `node:http` leaves such a request's body unparsed on the socket.
  if (announcesBody(req.rawHeaders)) {
    void sendResponse(res, plainText(501, "An upgrade request cannot carry a body here\n"));
    return;
  }
  serve(req, res, options);
}

async function serve(
  req: IncomingMessage,
  res: ServerResponse,
  { handler, sendTimeout }: HttpFrontOptions,
): Promise<void> {
  const fields = req.rawHeaders;
  const request = new CallerRequest(
    req.method ?? "GET",
    req.url ?? "/",
    fields,
    announcesBody(fields) ? bodyOf(req) : null,
    req.socket.remoteAddress ?? "",
  );
  res.on("close", () => {
    if (!res.writableFinished) {
      request.hangUp(new DOMException("The caller went away", "AbortError"));
    }
  });
  let answer: Response | PartsAnswer;
  try {
    answer = await handler(request);
  } catch {
    // The handler answers its own errors; this is a bug, and the caller still gets an answer.
    answer = plainText(500, "Internal Server Error\n");
  }
  // The body's length is held to what the head says, so that an answer can never run into
  // the next one on a kept-alive connection (a HEAD's or a 204's or 304's says another's).
  const declared = answer instanceof Response
    ? answer.headers.get("content-length")
    : declaredLength(answer.headers);
  if (declared !== null && !ONE_LENGTH.test(declared)) {
    // A caller could read a length that is not one number in more ways than one (nginx
    // refuses it from an upstream too); nothing is sent yet, so the caller gets a clear 502.
    if (answer.body instanceof ReadableStream) answer.body.cancel().catch(() => {});
    await sendResponse(
      res,
      plainText(502, "Bad Gateway: the answer's Content-Length is not a length\n"),
    );
    const error = new Error(`The answer's Content-Length is not one length: ${declared}`);
    request.sent?.(0, error, 502);
    return;
  }
  const length =
    declared === null || request.method === "HEAD" || BODYLESS_STATUS.has(answer.status)
      ? undefined
      : Number(declared);
  let body: Uint8Array | ReadableStream<Uint8Array> | null;
  let head: Head;
  if (answer instanceof Response) {
    head = headOf(answer);
    body = answer.body;
  } else {
    const { status, statusText, headers } = answer;
    head = { status, statusText, fields: flatFields(headers) };
    body = answer.body;
  }
  if (body instanceof Uint8Array && length !== undefined) {
    await sendWhole(res, head, length, body, request.sent);
  } else await send(res, head, body, request.signal, length, request.sent, sendTimeout);
}

/** The `Content-Length` of a header list as a `Headers` would give it (repeats joined). */
function declaredLength(headers: [string, string][]): string | null {
  let declared: string | null = null;
  for (let i = 0; i < headers.length; i++) {
    if (headers[i][0] !== "content-length") continue;
    declared = declared === null ? headers[i][1] : `${declared}, ${headers[i][1]}`;
  }
  return declared;
}

/** A header list as `writeHead` takes one: names and values in turn, repeats kept apart. */
function flatFields(headers: [string, string][]): string[] {
  const fields: string[] = new Array(headers.length * 2);
  for (let i = 0; i < headers.length; i++) {
    fields[2 * i] = headers[i][0];
    fields[2 * i + 1] = headers[i][1];
  }
  return fields;
}

/** Statuses whose answers have no body whatever their `Content-Length` says. */
const BODYLESS_STATUS = new Set([204, 304]);

/** A `Content-Length` value that is one length (duplicates are joined into a list). */
const ONE_LENGTH = /^\d+$/;

/** The answer's body did not have the length its head declared. */
function lengthMismatch(length: number, more: boolean): Error {
  return new Error(
    `The answer's body is ${more ? "longer" : "shorter"} than its Content-Length ${length}`,
  );
}

/** Writes an answer whose body is all in memory: the head and the body in one write. */
async function sendWhole(
  res: ServerResponse,
  head: Head,
  length: number,
  body: Uint8Array,
  sent?: (bytes: number, error?: unknown, status?: number) => void,
): Promise<void> {
  if (body.byteLength !== length) {
    // Nothing is sent yet: the caller gets a clear 502 rather than a broken answer.
    await sendResponse(
      res,
      plainText(502, "Bad Gateway: the answer's length is not what it said\n"),
    );
    sent?.(0, lengthMismatch(length, body.byteLength > length), 502);
    return;
  }
  writeHead(res, head);
  if (body.byteLength > 0) res.end(body);
  else res.end();
  sent?.(body.byteLength);
}

function plainText(status: number, text: string): Response {
  const bytes = new TextEncoder().encode(text);
  return new Response(bytes, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "content-length": `${bytes.length}` },
  });
}

const TOKEN_METHOD = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) /;
const KNOWN_METHODS = new Set(METHODS);

/** The method on a refused request line, if it is a token that `node:http` does not know. */
function unknownMethod(packet: Buffer | undefined): string | undefined {
  if (packet === undefined) return undefined;
  const line = new TextDecoder("latin1").decode(packet.subarray(0, 256));
  const method = TOKEN_METHOD.exec(line)?.[1];
  return method !== undefined && !KNOWN_METHODS.has(method) ? method : undefined;
}

/** Writes a small response on a socket that `node:http` gave up on, then closes it. */
async function writeOnSocket(socket: Duplex, response: Response): Promise<void> {
  const body = new Uint8Array(await response.arrayBuffer());
  let head = `HTTP/1.1 ${response.status} ${STATUS_CODES[response.status] ?? ""}\r\n`;
  for (const [name, value] of response.headers) {
    if (name !== "content-length" && name !== "connection") head += `${name}: ${value}\r\n`;
  }
  head += `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
  socket.write(head);
  socket.end(body);
}

/**
 * A `node:http` message's headers, in order, repeated ones kept.
 *
 * @param raw Its `rawHeaders`: names and values in turn.
 * @returns The headers.
 */
export function headersOf(raw: string[]): Headers {
  const headers = new Headers();
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i], raw[i + 1]);
  return headers;
}

/** The request's body as a stream that reads from the socket only as fast as it is pulled. */
function bodyOf(req: IncomingMessage): ReadableStream<Uint8Array> {
  // Once cancelled, closed or errored the stream takes nothing more: the request's events
  // that follow (its end, after a cancel) are the socket's business alone.
  let open = true;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      req.pause();
      req.on("data", (chunk: Uint8Array) => {
        if (!open) return;
        controller.enqueue(plainBytes(chunk));
        if ((controller.desiredSize ?? 0) <= 0) req.pause();
      });
      req.on("end", () => {
        if (open) controller.close();
        open = false;
      });
      const fail = (error: unknown): void => {
        if (open) controller.error(error);
        open = false;
      };
      req.on("error", fail);
      req.on("aborted", () => fail(new DOMException("The caller went away", "AbortError")));
    },
    pull() {
      req.resume();
    },
    cancel() {
      // The agent stopped reading: what is left is read and dropped, so that the
      // connection stays usable for the response and the caller's next request.
      open = false;
      req.resume();
    },
  }, { highWaterMark: 64 * 1024, size: (chunk) => chunk.byteLength });
}

/** Writes one of the front's own answers (an error, a refusal). */
function sendResponse(res: ServerResponse, response: Response): Promise<void> {
  return send(res, headOf(response), response.body);
}

async function send(
  res: ServerResponse,
  head: Head,
  body: Uint8Array | ReadableStream<Uint8Array> | null,
  signal: AbortSignal = new AbortController().signal,
  length?: number,
  sent?: (bytes: number, error?: unknown) => void,
  sendTimeout = Infinity,
): Promise<void> {
  writeHead(res, head);
  if (!(body instanceof ReadableStream)) {
    // None, or bytes without a length to hold them to (node frames them).
    if (body !== null && body.byteLength > 0) res.end(body);
    else res.end();
    sent?.(body?.byteLength ?? 0);
    return;
  }
  const reader = body.getReader();
  const onAbort = (): void => void reader.cancel(signal.reason).catch(() => {});
  signal.addEventListener("abort", onAbort, { once: true });
  let bytes = 0;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      if (length !== undefined && bytes + value.byteLength > length) {
        // What the head declared goes, and the answer ends there: the rest is dropped.
        const declared = value.subarray(0, length - bytes);
        bytes += declared.byteLength;
        res.end(declared);
        const error = lengthMismatch(length, true);
        reader.cancel(error).catch(() => {});
        sent?.(bytes, error);
        return;
      }
      bytes += value.byteLength;
      if (!res.write(value)) {
        await drainedWithin(res, sendTimeout);
        if (signal.aborted) break;
      }
    }
    if (!signal.aborted && length !== undefined && bytes < length) {
      throw lengthMismatch(length, false);
    }
    if (!signal.aborted) res.end();
    sent?.(bytes, signal.aborted ? signal.reason : undefined);
  } catch (error) {
    // The body failed midway (the agent went away, or it broke its length): cut the
    // connection, as a proxy does, so that the caller sees a truncated response rather than a
    // complete-looking one, and no byte of it is read as the next answer. The
    // socket itself: Bun's `res.destroy()` before any body byte sends a bare close-delimited
    // 200, which looks like a complete empty answer.
    (res.socket ?? res).destroy();
    sent?.(bytes, error);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/**
 * Resolves once `res` has drained, or closed. A caller that takes nothing for `ms` is cut
 * (its socket destroyed, which ends the wait): on the deadline heap, set only while a write
 * waits.
 */
function drainedWithin(res: ServerResponse, ms: number): Promise<void> {
  if (ms === Infinity) return drained(res);
  const heap = deadlinesOf();
  const cut = new Deadline(() => (res.socket ?? res).destroy());
  heap.set(cut, heap.clock.now() + ms);
  return drained(res).finally(() => heap.set(cut, undefined));
}

/** A `Response`'s status and headers, for `node:http` to write with the body. */
function headOf(response: Response): Head {
  // One pass, with no iterator objects (`forEach` yields each `Set-Cookie` on its own).
  const fields: Record<string, string | string[]> = {};
  let cookies: string[] | undefined;
  response.headers.forEach((value, name) => {
    if (name === "set-cookie") (cookies ??= []).push(value);
    else fields[name] = value;
  });
  if (cookies) fields["set-cookie"] = cookies;
  return { status: response.status, statusText: response.statusText, fields };
}

function writeHead(res: ServerResponse, head: Head): void {
  if (head.statusText) res.writeHead(head.status, head.statusText, head.fields);
  else res.writeHead(head.status, head.fields);
}
