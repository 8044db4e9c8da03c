/**
 * Raw HTTP/1.1 over `node:net` (so it runs under Deno and Bun): a byte reader for a socket,
 * the message-head and chunked-body parsers that the echo upstream (`_echo_upstream.ts`)
 * shares, and a client that sends a request's bytes exactly as given and reports the
 * response as it came: status line, header lines in order and case, the framing and the
 * decoded body. `fetch` cannot be used for this: it normalises targets (`..`, `//`, `\`),
 * adds headers and hides the framing.
 *
 * Strings that stand for bytes on the wire are latin1: each character is one byte, so
 * `"caf\xc3\xa9"` is the UTF-8 of "café" as raw bytes.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { connect, type Socket } from "node:net";
import { withTimeout } from "./_helpers.ts";

/** How a message body was delimited. */
export type Framing = "content-length" | "chunked" | "none";

/** Raw header lines: `[name, value]` in order, in the case they were sent. */
export type RawHeaders = [string, string][];

/** Reads a socket's bytes on demand: up to a delimiter, a count, or the end. */
export class SocketReader {
  #buffer: Buffer = Buffer.alloc(0);
  #ended = false;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("error", (error: Error) => {
      this.#failure = error;
      this.#notify();
    });
  }

  /** Whether no byte is buffered and the peer has ended. */
  get drained(): boolean {
    return this.#ended && this.#buffer.length === 0;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Waits for more bytes; fails once the peer has ended (callers wanted more). */
  async #more(what: string): Promise<void> {
    if (this.#failure) throw this.#failure;
    if (this.#ended) {
      throw new Error(`Connection ended while reading ${what} (${this.#buffer.length} bytes left)`);
    }
    await new Promise<void>((resolve) => this.#wake = resolve);
  }

  /** Waits until at least one byte is buffered or the peer ended; true if a byte is there. */
  async hasMore(): Promise<boolean> {
    while (this.#buffer.length === 0 && !this.#ended && !this.#failure) {
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    return this.#buffer.length > 0;
  }

  /** The bytes before `delimiter`, consuming the delimiter too. */
  async readUntil(delimiter: string, limit = 1 << 20): Promise<Buffer> {
    for (;;) {
      const at = this.#buffer.indexOf(delimiter, 0, "latin1");
      if (at !== -1) {
        const before = this.#buffer.subarray(0, at);
        this.#buffer = this.#buffer.subarray(at + delimiter.length);
        return before;
      }
      if (this.#buffer.length > limit) throw new Error(`No ${JSON.stringify(delimiter)} in limit`);
      await this.#more(JSON.stringify(delimiter));
    }
  }

  /** Exactly `count` bytes. */
  async readExactly(count: number): Promise<Buffer> {
    while (this.#buffer.length < count) await this.#more(`${count} bytes`);
    const bytes = this.#buffer.subarray(0, count);
    this.#buffer = this.#buffer.subarray(count);
    return bytes;
  }

  /** Everything until the peer closes. */
  async readToEnd(): Promise<Buffer> {
    while (!this.#ended && !this.#failure) {
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    if (this.#failure && !this.#ended) throw this.#failure;
    const bytes = this.#buffer;
    this.#buffer = Buffer.alloc(0);
    return bytes;
  }
}

/** A message head as sent: the start line and the header lines. */
export interface RawHead {
  startLine: string;
  headers: RawHeaders;
}

/** Reads one message head (up to the empty line), keeping names' case and order. */
export async function readHead(reader: SocketReader): Promise<RawHead> {
  const text = (await reader.readUntil("\r\n\r\n")).toString("latin1");
  const [startLine, ...lines] = text.split("\r\n");
  const headers: RawHeaders = lines.map((line) => {
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Error(`Malformed header line ${JSON.stringify(line)}`);
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  });
  return { startLine, headers };
}

/** Every value of header `name` (case-insensitive), one per line, in order. */
export function headerValues(headers: RawHeaders, name: string): string[] {
  const wanted = name.toLowerCase();
  return headers.filter(([key]) => key.toLowerCase() === wanted).map(([, value]) => value);
}

/** The single value of header `name`, `undefined` if absent; throws if it is repeated. */
export function headerValue(headers: RawHeaders, name: string): string | undefined {
  const values = headerValues(headers, name);
  if (values.length > 1) throw new Error(`${name} sent ${values.length} times: ${values}`);
  return values[0];
}

/** The framing a head announces: chunked wins over Content-Length (RFC 9112 §6.3). */
export function framingOf(headers: RawHeaders): Framing {
  const te = headerValues(headers, "transfer-encoding").join(",").toLowerCase();
  if (/(^|,)\s*chunked\s*$/.test(te)) return "chunked";
  return headerValues(headers, "content-length").length > 0 ? "content-length" : "none";
}

/** Reads a chunked body: the decoded bytes and each data chunk's size as sent. */
export async function readChunked(
  reader: SocketReader,
): Promise<{ body: Buffer; chunkSizes: number[] }> {
  const parts: Buffer[] = [];
  const chunkSizes: number[] = [];
  for (;;) {
    const line = (await reader.readUntil("\r\n")).toString("latin1");
    const size = parseInt(line.split(";")[0].trim(), 16);
    if (!Number.isFinite(size)) throw new Error(`Malformed chunk size ${JSON.stringify(line)}`);
    if (size === 0) break;
    chunkSizes.push(size);
    parts.push(Buffer.from(await reader.readExactly(size)));
    await reader.readUntil("\r\n");
  }
  // Trailer fields, if any, up to the empty line.
  while ((await reader.readUntil("\r\n")).length > 0);
  return { body: Buffer.concat(parts), chunkSizes };
}

/** Joins a start line and header lines into a request head (ends with the empty line). */
export function requestHead(startLine: string, headers: RawHeaders): string {
  return [startLine, ...headers.map(([name, value]) => `${name}: ${value}`), "", ""].join("\r\n");
}

/** A chunked encoding of `body`, cut into chunks of the given sizes (the rest in one chunk). */
export function chunked(body: Uint8Array, sizes: number[]): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  for (const size of [...sizes, body.length]) {
    const piece = body.subarray(offset, Math.min(body.length, offset + size));
    if (piece.length === 0) continue;
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), Buffer.from(piece));
    parts.push(Buffer.from("\r\n"));
    offset += piece.length;
  }
  parts.push(Buffer.from("0\r\n\r\n"));
  return Buffer.concat(parts);
}

/** A response as the raw client received it. */
export interface RawResponse {
  /** E.g. `HTTP/1.1 200 OK`. */
  statusLine: string;
  status: number;
  headers: RawHeaders;
  framing: Framing;
  /** The decoded body (empty for HEAD, 1xx, 204 and 304). */
  body: Uint8Array;
  /** Sizes of the data chunks, when chunked. */
  chunkSizes: number[];
  /** Statuses of interim (1xx) responses before the final one, e.g. `[100]`. */
  interim: number[];
}

/** Options for {@linkcode rawHttp}. */
export interface RawHttpOptions {
  /** Body bytes, sent after the head (after a 100 Continue when the head expects one). */
  body?: Uint8Array | string;
  /**
   * With `Expect: 100-continue`, how long to wait for the interim response before sending
   * the body anyway, as curl does (RFC 9110 §10.1.1 lets a client stop waiting).
   */
  continueWaitMs?: number;
  /** Bounds the whole exchange. Default 30 000. */
  timeoutMs?: number;
  /** Host to dial. Default `127.0.0.1`. */
  host?: string;
}

/**
 * Sends `head` (latin1: one character per byte) and `options.body` to `port`, reads one
 * response and closes the connection.
 *
 * @param port The server's port.
 * @param head The request head, e.g. from {@linkcode requestHead}.
 * @param options Body, timeouts, host.
 * @returns The response as received.
 */
export function rawHttp(
  port: number,
  head: string,
  options: RawHttpOptions = {},
): Promise<RawResponse> {
  const method = head.slice(0, head.indexOf(" "));
  const expectsContinue = /\r\nexpect:\s*100-continue\s*\r\n/i.test(head);
  const body = typeof options.body === "string"
    ? Buffer.from(options.body, "latin1")
    : options.body;
  const socket = connect(port, options.host ?? "127.0.0.1");
  const reader = new SocketReader(socket);
  const exchange = (async (): Promise<RawResponse> => {
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    socket.write(Buffer.from(head, "latin1"));
    let sent = false;
    const sendBody = (): void => {
      if (sent) return;
      sent = true;
      if (body && body.length > 0) socket.write(body);
    };
    let waitTimer: ReturnType<typeof setTimeout> | undefined;
    if (!expectsContinue) sendBody();
    else waitTimer = setTimeout(sendBody, options.continueWaitMs ?? 1_000);
    const interim: number[] = [];
    try {
      for (;;) {
        const { startLine, headers } = await readHead(reader);
        const status = Number(startLine.split(" ")[1]);
        if (status >= 100 && status < 200) {
          interim.push(status);
          if (status === 100) sendBody();
          continue;
        }
        const framing = framingOf(headers);
        const bodiless = method === "HEAD" || status === 204 || status === 304;
        let received: Uint8Array = new Uint8Array(0);
        let chunkSizes: number[] = [];
        if (!bodiless && framing === "chunked") {
          ({ body: received, chunkSizes } = await readChunked(reader));
        } else if (!bodiless && framing === "content-length") {
          received = await reader.readExactly(Number(headerValue(headers, "content-length")));
        } else if (!bodiless) {
          received = await reader.readToEnd();
        }
        return {
          statusLine: startLine,
          status,
          headers,
          framing,
          body: new Uint8Array(received),
          chunkSizes,
          interim,
        };
      }
    } finally {
      clearTimeout(waitTimer);
    }
  })();
  return withTimeout(exchange, options.timeoutMs ?? 30_000, `raw ${head.split("\r\n")[0]}`)
    .finally(() => socket.destroy());
}

/** The body as UTF-8 JSON. */
export function jsonOf<T = Record<string, unknown>>(response: { body: Uint8Array }): T {
  return JSON.parse(new TextDecoder().decode(response.body)) as T;
}
