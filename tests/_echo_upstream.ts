/**
 * A raw HTTP/1.1 echo server on `node:net` (runs under Deno and Bun) that reports each
 * request exactly as it arrived: the request line's bytes, the header lines in order and
 * case, the framing, the decoded body and, when chunked, the chunk sizes. A runtime's HTTP
 * server would normalise all of that away, which is what the proxy tests must see past.
 *
 * It answers with that report as JSON framed by Content-Length. What it answers can be set
 * without touching the request under test:
 *
 * - when starting it: status, extra header lines (e.g. `Location`, several `Set-Cookie`)
 *   and the response framing (`length` or `chunked`);
 * - per request, under the fixed prefix `/__respond/{length|chunked}[/{n}]/…`: that
 *   framing, and with `n` a body of `n` pattern bytes ({@linkcode patternBytes}) instead
 *   of the JSON report.
 *
 * It keeps connections alive across requests, and answers `Expect: 100-continue` with an
 * interim `100 Continue` before reading the body (and records that it did).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createServer, type Socket } from "node:net";
import {
  type Framing,
  framingOf,
  headerValue,
  headerValues,
  type RawHeaders,
  readChunked,
  readHead,
  SocketReader,
} from "./_raw_http.ts";

/** One request as the echo upstream received it. */
export interface EchoedRequest {
  /** Which TCP connection carried it, counting from 1 (keep-alive shows as repeats). */
  connection: number;
  /** The request line as sent (latin1: one character per byte). */
  requestLine: string;
  method: string;
  /** The request-target's bytes as sent (latin1). */
  target: string;
  version: string;
  headers: RawHeaders;
  framing: Framing;
  /** The decoded body, base64. */
  body: string;
  bodyLength: number;
  /** Sizes of the data chunks, when chunked. */
  chunkSizes: number[];
  /** Whether it came with `Expect: 100-continue` (and was answered `100 Continue`). */
  expectContinue: boolean;
}

/** How the echo upstream answers, fixed when it starts. */
export interface EchoOptions {
  /** Response framing. Default `"length"` (Content-Length). */
  framing?: "length" | "chunked";
  /** Response status. Default 200. */
  status?: number;
  /** Extra response header lines; a function gets the upstream's origin (`http://127.0.0.1:port`). */
  headers?: RawHeaders | ((origin: string) => RawHeaders);
}

/** A running echo upstream. */
export interface EchoUpstream {
  /** Its origin, e.g. `http://127.0.0.1:40123`. */
  url: string;
  port: number;
  /** Every request received so far, in order. */
  requests: EchoedRequest[];
  /** Stops listening and drops every connection. */
  close(): Promise<void>;
}

/** Per-request control of the answer: `/__respond/{length|chunked}[/{n}]`. */
const RESPOND = /^\/__respond\/(length|chunked)(?:\/(\d+))?(?=[/?]|$)/;
const REASONS: Record<number, string> = { 200: "OK", 301: "Moved Permanently", 302: "Found" };
const CHUNK = 16_384;

/** `n` bytes of a pattern that repeats at no small power of two. */
export function patternBytes(n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = (Math.imul(i, 2654435761) >>> 24) ^ (i & 0xff);
  return bytes;
}

/** The decoded body of a recorded request. */
export function echoedBody(request: EchoedRequest): Uint8Array {
  return new Uint8Array(Buffer.from(request.body, "base64"));
}

/**
 * Starts an echo upstream on 127.0.0.1 at a free port.
 *
 * @param options The status, extra headers and framing of its answers.
 * @returns The running server.
 */
export async function startEchoUpstream(options: EchoOptions = {}): Promise<EchoUpstream> {
  const requests: EchoedRequest[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  let origin = "";

  async function serve(socket: Socket, connection: number): Promise<void> {
    const reader = new SocketReader(socket);
    while (await reader.hasMore()) {
      const { startLine, headers } = await readHead(reader);
      const [method, target, version] = startLine.split(" ");
      const expectContinue = headerValues(headers, "expect").some((value) =>
        value.toLowerCase() === "100-continue"
      );
      if (expectContinue) socket.write("HTTP/1.1 100 Continue\r\n\r\n");
      const framing = framingOf(headers);
      let body: Buffer = Buffer.alloc(0);
      let chunkSizes: number[] = [];
      if (framing === "chunked") ({ body, chunkSizes } = await readChunked(reader));
      else if (framing === "content-length") {
        body = await reader.readExactly(Number(headerValue(headers, "content-length")));
      }
      const echoed: EchoedRequest = {
        connection,
        requestLine: startLine,
        method,
        target,
        version,
        headers,
        framing,
        body: body.toString("base64"),
        bodyLength: body.length,
        chunkSizes,
        expectContinue,
      };
      requests.push(echoed);
      socket.write(answer(echoed));
      const close = headerValues(headers, "connection").some((value) => /\bclose\b/i.test(value));
      if (close || version === "HTTP/1.0") break;
    }
    socket.end();
  }

  function answer(request: EchoedRequest): Buffer {
    const control = request.target.match(RESPOND);
    const framing = control?.[1] ?? options.framing ?? "length";
    const body = control?.[2] !== undefined
      ? Buffer.from(patternBytes(Number(control[2])))
      : Buffer.from(JSON.stringify(request));
    const status = options.status ?? 200;
    const extra = typeof options.headers === "function"
      ? options.headers(origin)
      : options.headers ?? [];
    const lines = [
      `HTTP/1.1 ${status} ${REASONS[status] ?? "Status"}`,
      `Content-Type: ${
        control?.[2] !== undefined ? "application/octet-stream" : "application/json"
      }`,
      ...extra.map(([name, value]) => `${name}: ${value}`),
      framing === "chunked" ? "Transfer-Encoding: chunked" : `Content-Length: ${body.length}`,
      "",
      "",
    ];
    const head = Buffer.from(lines.join("\r\n"), "latin1");
    if (request.method === "HEAD") return head;
    if (framing !== "chunked") return Buffer.concat([head, body]);
    const parts: Buffer[] = [head];
    for (let offset = 0; offset < body.length; offset += CHUNK) {
      const piece = body.subarray(offset, offset + CHUNK);
      parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n"));
    }
    parts.push(Buffer.from("0\r\n\r\n"));
    return Buffer.concat(parts);
  }

  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    serve(socket, ++connections).catch(() => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  origin = `http://127.0.0.1:${port}`;
  return {
    url: origin,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
