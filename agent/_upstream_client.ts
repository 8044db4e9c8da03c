/**
 * The tunnel's HTTP/1.1 client: one origin, sockets kept alive between requests.
 *
 * A proxy's client writes the request it is given and nothing else, and hands back the
 * response as it came: `fetch` does neither (see `_tunnel.ts`), and `node:http`, which did,
 * cost the agent 40 % of its CPU for a small request on Deno and Bun (its agent, its
 * request and response objects, its events). This one writes the head and a whole body in
 * one socket write and reads the response with `_http1_response.ts`, on the runtime's own
 * TCP sockets (`RUNTIME.connectTcp`: this client costs a fifth less CPU per request on Bun
 * than on `node:net`, a tenth less on Deno), or on `node:tls` for an `https:` upstream.
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import type { Cancel } from "../connection/_cancel.ts";
import { RUNTIME, type TcpConnection, type TcpHandlers } from "../runtime/mod.ts";
import { adaptNodeSocket } from "../runtime/_node_net.ts";
import { TOKEN } from "../_http_token.ts";
import { type ResponseEvent, type ResponseHead, ResponseParser } from "./_http1_response.ts";

/** A request as the tunnel sends it on. */
export interface UpstreamRequest {
  /** The method, a token. */
  method: string;
  /** The request target as written: each character one byte (see `_tunnel.ts`'s `wireTarget`). */
  target: string;
  /**
   * The header fields in the order written, and nothing else but `Transfer-Encoding:
   * chunked` for a body without a `Content-Length` among them (they hold no
   * `Transfer-Encoding`: the framing is this client's).
   */
  headers: [string, string][];
  /** The body, or `null` for none (then no framing is written). */
  body: Uint8Array | ReadableStream<Uint8Array> | null;
  /** Aborts the exchange: the socket is destroyed and the promise rejects with the reason. */
  cancel: Cancel;
}

/** The upstream's answer. */
export interface UpstreamResponse {
  /** Its head. */
  head: ResponseHead;
  /**
   * Its body: bytes when it came whole with the head (empty for a bodiless one), else a
   * stream read no further ahead than its reader.
   */
  body: Uint8Array | ReadableStream<Uint8Array>;
}

/** Bytes of a response body read ahead of its reader. */
const READ_AHEAD = 64 * 1024;
/** Sockets kept idle at most, as `node:http`'s agent keeps. */
const MAX_IDLE = 256;
/**
 * A socket idle longer than this is not used again: servers close idle keep-alive
 * connections after a few seconds (Node's 5 s, nginx's 75 s), and a request written as one
 * closes is lost.
 */
const IDLE_MS = 4000;
/** RFC 9110 §9.2.2: what may be sent again when a kept-alive socket turns out closed. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);
/** What `node:http` refuses in a path: controls, space, and characters beyond a byte. */
const INVALID_TARGET = /[^\x21-\xff]/;
/** What a field value may not hold (RFC 9110 §5.5, and one byte per character). */
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/** One socket to the upstream, and the exchange it carries (none while idle). */
interface Line {
  socket: TcpConnection;
  exchange: Exchange | undefined;
  idleSince: number;
}

/** What a socket's events go to while it carries an exchange. */
interface Exchange {
  data(chunk: Uint8Array): void;
  end(): void;
  failed(error: Error): void;
}

/**
 * The request's head, each character one byte (latin1, as HTTP/1.1 writes a head): written as
 * a string, which both runtimes copy straight into the socket, where encoding it into bytes
 * first cost a tenth of the client's CPU (an off-heap allocation per request on Deno).
 *
 * @throws {TypeError} If the method, target or a header could not be written as given.
 */
function requestHead(request: UpstreamRequest, chunked: boolean): string {
  const { method, target, headers } = request;
  if (!TOKEN.test(method)) throw new TypeError(`Invalid method ${JSON.stringify(method)}`);
  if (INVALID_TARGET.test(target)) {
    throw new TypeError("Request path contains unescaped characters");
  }
  let head = `${method} ${target} HTTP/1.1\r\n`;
  for (const [name, value] of headers) {
    if (!TOKEN.test(name)) throw new TypeError(`Invalid header name ${JSON.stringify(name)}`);
    if (INVALID_VALUE.test(value)) {
      throw new TypeError(`Invalid character in header content ${JSON.stringify(name)}`);
    }
    head += `${name}: ${value}\r\n`;
  }
  return head + (chunked ? "transfer-encoding: chunked\r\n\r\n" : "\r\n");
}

/** Writes the head, and a whole body with its framing, in one go. */
function writeRequest(
  socket: TcpConnection,
  head: string,
  body: UpstreamRequest["body"],
  chunked: boolean,
): void {
  if (!(body instanceof Uint8Array)) socket.write(head);
  else if (body.byteLength === 0) socket.write(chunked ? `${head}0\r\n\r\n` : head);
  else if (!chunked) socket.write(head, body);
  else socket.write(`${head}${body.byteLength.toString(16)}\r\n`, body, "\r\n0\r\n\r\n");
}

/** The concatenation of some body chunks. */
function joinedBytes(chunks: Uint8Array[], bytes: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const joined = new Uint8Array(bytes);
  let at = 0;
  for (const chunk of chunks) {
    joined.set(chunk, at);
    at += chunk.byteLength;
  }
  return joined;
}

/** A request on its way, as sent (and sent again, if it must be). */
interface Sending {
  request: UpstreamRequest;
  /** Its head, as written. */
  head: string;
  chunked: boolean;
  resolve(response: UpstreamResponse): void;
  reject(error: unknown): void;
}

/** What an exchange asks of its client. */
interface Owner {
  /** Gives its socket back, or closes it. */
  release(line: Line, reusable: boolean): void;
  /** Sends the request once more, on a new socket. */
  resend(sending: Sending): void;
}

/**
 * One request's exchange on one socket: its state in one object, where closures over it made
 * several per request (this runs on every request).
 */
class InFlight implements Exchange {
  readonly #owner: Owner;
  readonly #sending: Sending;
  readonly #line: Line;
  /** Whether a failure before any answer may send it again (see `failed`). */
  readonly #mayRetry: boolean;
  readonly #parser: ResponseParser;
  #received = false;
  #over = false;
  #head: ResponseHead | undefined;
  #stream: ReadableStreamDefaultController<Uint8Array> | undefined;
  /** Whether the whole request was written (a streamed body, once its pump ends). */
  written: boolean;
  /** A streamed body's reader. */
  reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  /** The request's cancel aborts the exchange. */
  readonly cancelled = (reason: unknown): void => this.fail(reason);

  constructor(owner: Owner, sending: Sending, line: Line, mayRetry: boolean) {
    this.#owner = owner;
    this.#sending = sending;
    this.#line = line;
    this.#mayRetry = mayRetry;
    this.#parser = new ResponseParser(sending.request.method);
    this.written = !(sending.request.body instanceof ReadableStream);
  }

  data(chunk: Uint8Array): void {
    this.#received = true;
    let list: ResponseEvent[];
    try {
      list = this.#parser.receive(chunk);
    } catch (error) {
      return this.fail(error);
    }
    this.#events(list);
  }

  end(): void {
    let list: ResponseEvent[];
    try {
      list = this.#parser.end();
    } catch (error) {
      return this.failed(error as Error);
    }
    this.#events(list);
  }

  failed(error: Error): void {
    if (this.#over) return;
    // A kept-alive socket the upstream closed as this was written: the request never
    // reached it, as far as can be told; once more on a new socket, if that is safe.
    const { request } = this.#sending;
    if (
      this.#mayRetry && !this.#received && !(request.body instanceof ReadableStream) &&
      IDEMPOTENT.has(request.method)
    ) {
      this.#over = true;
      this.#line.exchange = undefined;
      this.#line.socket.destroy();
      return this.#owner.resend(this.#sending);
    }
    this.fail(error);
  }

  /** Before the head the promise rejects; after it the body errors. */
  fail(error: unknown): void {
    if (this.#over) return;
    this.#finish(false);
    if (this.#head === undefined) this.#sending.reject(error);
    else this.#stream?.error(error);
  }

  /** The exchange is over: the socket goes back or is closed, and the body pump stops. */
  #finish(reusable: boolean): void {
    if (this.#over) return;
    this.#over = true;
    this.#sending.request.cancel.listen(undefined);
    this.#owner.release(this.#line, reusable && this.written);
    if (!this.written) this.reader?.cancel().catch(() => {});
  }

  #events(list: ResponseEvent[]): void {
    let chunks: Uint8Array[] | undefined;
    let size = 0;
    let ended = false;
    let reusable = false;
    for (const event of list) {
      if (event.kind === "head") {
        this.#head = event.head;
        chunks = [];
      } else if (event.kind === "body") {
        if (chunks) {
          chunks.push(event.bytes);
          size += event.bytes.byteLength;
        } else {
          this.#stream!.enqueue(event.bytes);
        }
      } else {
        ended = true;
        reusable = event.reusable;
      }
    }
    const socket = this.#line.socket;
    if (chunks) {
      if (ended) {
        // Whole with its head: bytes, with no stream to read them through.
        this.#finish(reusable);
        return this.#sending.resolve({ head: this.#head!, body: joinedBytes(chunks, size) });
      }
      const first = chunks;
      const readable = new ReadableStream<Uint8Array>({
        start: (controller) => {
          this.#stream = controller;
          for (const chunk of first) controller.enqueue(chunk);
        },
        pull() {
          socket.resume();
        },
        cancel: () => {
          this.#finish(false);
        },
      }, { highWaterMark: READ_AHEAD, size: (chunk) => chunk.byteLength });
      this.#sending.resolve({ head: this.#head!, body: readable });
    } else if (ended) {
      this.#finish(reusable);
      this.#stream?.close();
      return;
    }
    if (this.#stream && (this.#stream.desiredSize ?? 0) <= 0) socket.pause();
  }
}

/** An HTTP/1.1 client to one origin, keeping its sockets alive between requests. */
export class UpstreamClient {
  readonly #connect: (handlers: TcpHandlers) => TcpConnection;
  /** Idle sockets, the most recently used last. */
  readonly #idle: Line[] = [];
  /** What its exchanges ask of it. */
  readonly #owner: Owner = {
    release: (line, reusable) => this.#release(line, reusable),
    resend: (sending) => this.#exchange(sending, false),
  };

  /**
   * @param origin The upstream's `http:` or `https:` URL (only its origin is used).
   */
  constructor(origin: URL) {
    const host = origin.hostname.replace(/^\[|\]$/g, "");
    const secure = origin.protocol === "https:";
    const port = Number(origin.port) || (secure ? 443 : 80);
    const connectTcp = RUNTIME.connectTcp;
    this.#connect = secure
      ? (handlers) =>
        adaptNodeSocket(
          tls.connect({
            host,
            port,
            // SNI takes a name, never an address.
            servername: net.isIP(host) ? undefined : host,
            ALPNProtocols: ["http/1.1"],
          }),
          handlers,
        )
      : connectTcp
      ? (handlers) => connectTcp(host, port, handlers)
      : (handlers) => adaptNodeSocket(net.connect({ host, port }), handlers);
  }

  /**
   * Sends a request and settles with the response head (and its body, if it came whole).
   *
   * @returns The response; rejects with the socket's error, an
   *   `UpstreamResponseError` (an answer not valid HTTP/1.1, or cut short), or the cancel's reason.
   * @throws {TypeError} At once, if the request could not be written as given.
   */
  request(request: UpstreamRequest): Promise<UpstreamResponse> {
    let chunked = request.body !== null;
    for (const [name] of request.headers) {
      if (name.length === 14 && name.toLowerCase() === "content-length") chunked = false;
    }
    const head = requestHead(request, chunked);
    return new Promise((resolve, reject) =>
      this.#exchange({ request, head, chunked, resolve, reject }, true)
    );
  }

  /** A socket for one exchange: an idle one still fresh, or a new one. */
  #line(): { line: Line; reused: boolean } {
    const now = Date.now();
    for (let line = this.#idle.pop(); line !== undefined; line = this.#idle.pop()) {
      if (now - line.idleSince < IDLE_MS) {
        line.socket.ref();
        return { line, reused: true };
      }
      line.socket.destroy();
    }
    // One set of handlers for the socket's life: adding and removing them per request
    // costs more than the request's own parsing.
    const line: Line = { socket: undefined!, exchange: undefined, idleSince: 0 };
    line.socket = this.#connect({
      data: (chunk) => {
        if (line.exchange) line.exchange.data(chunk);
        else this.#drop(line);
      },
      end: () => {
        if (line.exchange) line.exchange.end();
        else this.#drop(line);
      },
      error: (error) => {
        if (line.exchange) line.exchange.failed(error);
        else this.#drop(line);
      },
      close: () => {
        if (line.exchange) {
          line.exchange.failed(new Error("The upstream closed the connection"));
        } else this.#drop(line);
      },
    });
    return { line, reused: false };
  }

  /** Takes a socket out of use: closed by the upstream, or sent what it should not have. */
  #drop(line: Line): void {
    const at = this.#idle.indexOf(line);
    if (at >= 0) this.#idle.splice(at, 1);
    line.socket.destroy();
  }

  /** Gives a socket back for the next request, or closes it. */
  #release(line: Line, reusable: boolean): void {
    line.exchange = undefined;
    if (!reusable || this.#idle.length >= MAX_IDLE || line.socket.destroyed) {
      line.socket.destroy();
      return;
    }
    line.idleSince = Date.now();
    // An idle socket keeps no process alive, as `node:http`'s agent's does not.
    line.socket.unref();
    this.#idle.push(line);
  }

  /** Sends `sending`'s request on a socket (the second time only on a new one). */
  #exchange(sending: Sending, mayRetry: boolean): void {
    const { request } = sending;
    if (request.cancel.aborted) return sending.reject(request.cancel.reason);
    const { line, reused } = this.#line();
    const exchange = new InFlight(this.#owner, sending, line, reused && mayRetry);
    line.exchange = exchange;
    request.cancel.listen(exchange.cancelled);
    writeRequest(line.socket, sending.head, request.body, sending.chunked);
    if (request.body instanceof ReadableStream) {
      const reader = exchange.reader = request.body.getReader();
      pump(reader, line.socket, sending.chunked).then(
        () => exchange.written = true,
        (error) => exchange.fail(error),
      );
    }
  }
}

/** Writes a streamed body, waiting for the socket to drain. */
async function pump(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  socket: TcpConnection,
  chunked: boolean,
): Promise<void> {
  for (;;) {
    const { done, value } = await reader.read();
    if (socket.destroyed) return;
    if (done) break;
    if (value.byteLength === 0) continue;
    const below = chunked
      ? socket.write(`${value.byteLength.toString(16)}\r\n`, value, "\r\n")
      : socket.write(value);
    if (!below) await socket.drained();
  }
  if (chunked) socket.write("0\r\n\r\n");
}
