/**
 * Reading an HTTP/1.1 response, sans I/O: bytes in, a head, body bytes and an end out.
 *
 * The tunnel's upstream client (`_upstream_client.ts`) feeds it what the socket gives and
 * acts on the events; it holds no socket, timer or clock. It frames the body as RFC 9112
 * §6.3 says, skips interim (1xx) heads, and refuses what could be read two ways (a
 * `Transfer-Encoding` with a `Content-Length`, two lengths, whitespace before a colon), so
 * that a response never bleeds into the next on a kept-alive socket.
 *
 * @module
 */

import { TOKEN } from "../_http_token.ts";

/** A response's head, as the upstream sent it. */
export interface ResponseHead {
  /** The HTTP minor version: 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: number;
  /** The status code. */
  status: number;
  /** The reason phrase (each byte one latin1 character), `""` when absent. */
  statusText: string;
  /**
   * Name, value, name, value… in the order sent, the names' case kept, each byte one latin1
   * character; values trimmed of spaces and tabs, an obs-fold continuation joined with a space.
   */
  rawHeaders: string[];
}

/** What bytes fed to a {@linkcode ResponseParser} completed. */
export type ResponseEvent =
  | { kind: "head"; head: ResponseHead }
  | { kind: "body"; bytes: Uint8Array }
  /** The response is over; `reusable`: the socket can carry another request. */
  | { kind: "end"; reusable: boolean };

/** An upstream's response that is not valid HTTP/1.1, or that the upstream cut short. */
export class UpstreamResponseError extends Error {
  override name = "UpstreamResponseError";
}

/** The longest chunk-size line (with its extensions) read. */
const MAX_CHUNK_LINE = 4096;
const LF = 0x0a;
const CR = 0x0d;

/** Where the parser is in the response. */
const State = {
  Head: 0,
  /** In a body of known length. */
  Length: 1,
  ChunkSize: 2,
  ChunkData: 3,
  /** The CRLF after a chunk's data. */
  ChunkDataEnd: 4,
  Trailers: 5,
  /** In a body that ends when the upstream closes. */
  UntilClose: 6,
  Done: 7,
} as const;
type State = typeof State[keyof typeof State];

/** RFC 9112 §4: the reason phrase without controls other than HT. */
// deno-lint-ignore no-control-regex
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?$/;
/** Controls other than HT (RFC 9110 §5.5). */
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const DIGITS = /^\d{1,15}$/;
const HEX = /^[0-9a-fA-F]{1,15}$/;
const SPACES = /^[ \t]+|[ \t]+$/g;
const CLOSE_TOKEN = /(?:^|,)[ \t]*close[ \t]*(?:,|$)/i;

const ascii = new TextDecoder();

/** `bytes[from, to)` with each byte as one latin1 character. */
function latin1(bytes: Uint8Array, from: number, to: number): string {
  let i = from;
  while (i < to && bytes[i] < 0x80) i++;
  // ASCII, the usual case, in one native call.
  if (i === to) return ascii.decode(bytes.subarray(from, to));
  let text = "";
  for (i = from; i < to; i++) text += String.fromCharCode(bytes[i]);
  return text;
}

/**
 * Reads one response to one request. Each `receive()` returns the events the bytes
 * completed: `head` once (interim 1xx heads are skipped), `body` with views of the given
 * bytes (not copies), and `end` once. Invalid input throws {@linkcode UpstreamResponseError};
 * the parser is then of no further use.
 */
export class ResponseParser {
  readonly #noBody: boolean;
  readonly #maxHeadBytes: number;
  #state: State = State.Head;
  /** Bytes of a line-based state not yet complete, kept for the next `receive()`. */
  #carry: Uint8Array | null = null;
  /** Where to go on looking for the head's end in `#carry`. */
  #scanned = 0;
  /** Body bytes left: of the length, or of the chunk. */
  #remaining = 0;
  /** Bytes of the trailer section so far. */
  #trailerBytes = 0;
  #reusable = true;
  #received = false;
  #end: { kind: "end"; reusable: boolean } | undefined;

  /**
   * @param requestMethod The method of the request this answers: a `HEAD`'s has no body.
   * @param maxHeadBytes The largest head (and trailer section) read.
   */
  constructor(requestMethod: string, maxHeadBytes = 16384) {
    this.#noBody = requestMethod === "HEAD";
    this.#maxHeadBytes = maxHeadBytes;
  }

  /**
   * Feeds bytes the upstream sent.
   *
   * @param bytes The bytes, not to be reused by the caller: body events are views of them.
   * @returns The events they completed.
   * @throws {UpstreamResponseError} If the response is not valid HTTP/1.1.
   */
  receive(bytes: Uint8Array): ResponseEvent[] {
    const events: ResponseEvent[] = [];
    if (bytes.byteLength === 0) return events;
    this.#received = true;
    let input = bytes;
    if (this.#carry !== null) {
      input = new Uint8Array(this.#carry.byteLength + bytes.byteLength);
      input.set(this.#carry);
      input.set(bytes, this.#carry.byteLength);
      this.#carry = null;
    }
    let at = 0;
    while (at < input.byteLength) {
      switch (this.#state) {
        case State.Head: {
          const end = this.#headEnd(input, at);
          if (end < 0) {
            if (input.byteLength - at > this.#maxHeadBytes) this.#headTooLarge();
            this.#carry = input.subarray(at);
            return events;
          }
          if (end - at > this.#maxHeadBytes) this.#headTooLarge();
          const head = this.#head(input, at, end);
          at = end;
          if (head !== undefined) events.push({ kind: "head", head });
          // (Set by `#head`, which the narrowing above does not see.)
          if ((this.#state as State) === State.Done) events.push(this.#ended());
          break;
        }
        case State.Length:
        case State.ChunkData: {
          const take = Math.min(this.#remaining, input.byteLength - at);
          events.push({ kind: "body", bytes: input.subarray(at, at + take) });
          at += take;
          this.#remaining -= take;
          if (this.#remaining > 0) break;
          if (this.#state === State.Length) {
            this.#state = State.Done;
            events.push(this.#ended());
          } else {
            this.#state = State.ChunkDataEnd;
          }
          break;
        }
        case State.ChunkDataEnd: {
          if (input[at] === CR) {
            if (at + 1 === input.byteLength) {
              this.#carry = input.subarray(at);
              return events;
            }
            at++;
          }
          if (input[at] !== LF) {
            throw new UpstreamResponseError("A chunk's data runs past its size");
          }
          at++;
          this.#state = State.ChunkSize;
          break;
        }
        case State.ChunkSize: {
          const end = input.indexOf(LF, at);
          if (end < 0) {
            if (input.byteLength - at > MAX_CHUNK_LINE) this.#chunkLineTooLong();
            this.#carry = input.subarray(at);
            return events;
          }
          if (end - at > MAX_CHUNK_LINE) this.#chunkLineTooLong();
          const line = latin1(input, at, end);
          at = end + 1;
          // The size, then optional whitespace and extensions, which say nothing we use.
          const size = line.replace(/\r$/, "").split(";", 1)[0].replace(SPACES, "");
          if (!HEX.test(size)) {
            throw new UpstreamResponseError(`Invalid chunk size ${JSON.stringify(size)}`);
          }
          this.#remaining = Number.parseInt(size, 16);
          this.#state = this.#remaining === 0 ? State.Trailers : State.ChunkData;
          break;
        }
        case State.Trailers: {
          const end = input.indexOf(LF, at);
          const length = (end < 0 ? input.byteLength : end + 1) - at;
          this.#trailerBytes += length;
          if (this.#trailerBytes > this.#maxHeadBytes) {
            throw new UpstreamResponseError(
              `The upstream's trailer section is larger than ${this.#maxHeadBytes} bytes`,
            );
          }
          if (end < 0) {
            // Counted again when the line completes.
            this.#trailerBytes -= length;
            this.#carry = input.subarray(at);
            return events;
          }
          const empty = end === at || (end === at + 1 && input[at] === CR);
          at = end + 1;
          if (empty) {
            this.#state = State.Done;
            events.push(this.#ended());
          }
          break;
        }
        case State.UntilClose:
          events.push({ kind: "body", bytes: input.subarray(at) });
          at = input.byteLength;
          break;
        case State.Done:
          // Nothing may follow a response to the one request sent: the socket is spoilt.
          this.#end!.reusable = false;
          at = input.byteLength;
          break;
      }
    }
    return events;
  }

  /**
   * The upstream closed its side.
   *
   * @returns The end of a body read until then, or nothing if the response was over.
   * @throws {UpstreamResponseError} If it cut the response short.
   */
  end(): ResponseEvent[] {
    switch (this.#state) {
      case State.Done:
        return [];
      case State.UntilClose:
        this.#state = State.Done;
        return [this.#ended()];
      case State.Head:
        throw new UpstreamResponseError(
          this.#received
            ? "The upstream closed the connection mid-head"
            : "The upstream closed the connection before answering",
        );
      default:
        throw new UpstreamResponseError("The upstream closed the connection mid-body");
    }
  }

  #ended(): { kind: "end"; reusable: boolean } {
    return this.#end = { kind: "end", reusable: this.#reusable };
  }

  /** The index just past the head's blank line in `input`, from `at`, or -1. */
  #headEnd(input: Uint8Array, at: number): number {
    let from = at + this.#scanned;
    for (;;) {
      const lf = input.indexOf(LF, from);
      if (lf < 0) {
        // The last byte may be the start of the blank line: look at it again.
        this.#scanned = Math.max(0, input.byteLength - at - 1);
        return -1;
      }
      const next = input[lf + 1];
      if (next === LF) return this.#found(lf + 2);
      if (next === CR) {
        if (lf + 2 >= input.byteLength) {
          this.#scanned = lf - at;
          return -1;
        }
        if (input[lf + 2] === LF) return this.#found(lf + 3);
      }
      if (lf + 1 >= input.byteLength) {
        this.#scanned = lf - at;
        return -1;
      }
      from = lf + 1;
    }
  }

  #found(end: number): number {
    this.#scanned = 0;
    return end;
  }

  #headTooLarge(): never {
    throw new UpstreamResponseError(
      `The upstream's response head is larger than ${this.#maxHeadBytes} bytes`,
    );
  }

  #chunkLineTooLong(): never {
    throw new UpstreamResponseError(`A chunk-size line is longer than ${MAX_CHUNK_LINE} bytes`);
  }

  /**
   * Reads a head and sets the state its framing says.
   *
   * @returns The head, or `undefined` for an interim (1xx) one.
   */
  #head(input: Uint8Array, from: number, to: number): ResponseHead | undefined {
    // Lines by index in one string, with no array of them or copy of each without its CR.
    const text = latin1(input, from, to);
    let lf = text.indexOf("\n");
    const statusLine = text.slice(0, lineEnd(text, lf, 0));
    const status = STATUS_LINE.exec(statusLine);
    if (status === null) {
      throw new UpstreamResponseError(
        `Invalid status line ${JSON.stringify(statusLine.slice(0, 100))}`,
      );
    }
    const code = Number(status[2]);
    if (code === 101) {
      throw new UpstreamResponseError("The upstream switched protocols, which was not asked of it");
    }
    const rawHeaders: string[] = [];
    let length: string | undefined;
    let codings: string | undefined;
    let close = false;
    // The head ends at its blank line, the first empty one (`#headEnd` found it).
    for (let start = lf + 1; (lf = text.indexOf("\n", start)) >= 0; start = lf + 1) {
      const end = lineEnd(text, lf, start);
      if (end === start) break;
      const first = text.charCodeAt(start);
      if (first === 0x20 || first === 0x09) {
        // obs-fold (RFC 9112 §5.2): a proxy replaces it with a space.
        if (rawHeaders.length === 0) {
          throw new UpstreamResponseError("A folded line before any header field");
        }
        rawHeaders[rawHeaders.length - 1] += ` ${fieldValue(text, start, end)}`;
        continue;
      }
      const colon = text.indexOf(":", start);
      const name = colon < 0 || colon > end ? "" : text.slice(start, colon);
      if (name === "" || !TOKEN.test(name)) {
        throw new UpstreamResponseError(
          `Invalid header field line ${JSON.stringify(text.slice(start, end).slice(0, 100))}`,
        );
      }
      const value = fieldValue(text, colon + 1, end);
      rawHeaders.push(name, value);
      switch (name.length) {
        case 10:
          if (name.toLowerCase() === "connection" && CLOSE_TOKEN.test(value)) close = true;
          break;
        case 14:
          if (name.toLowerCase() === "content-length") {
            if (length !== undefined) {
              throw new UpstreamResponseError("More than one Content-Length");
            }
            length = value;
          }
          break;
        case 17:
          if (name.toLowerCase() === "transfer-encoding") {
            codings = codings === undefined ? value : `${codings}, ${value}`;
          }
          break;
      }
    }
    if (code < 200) return undefined;
    if (codings !== undefined && length !== undefined) {
      throw new UpstreamResponseError("Both Transfer-Encoding and Content-Length");
    }
    const minor = Number(status[1]);
    this.#reusable = minor === 1 && !close;
    if (this.#noBody || code === 204 || code === 304) {
      this.#state = State.Done;
    } else if (codings !== undefined) {
      const last = codings.slice(codings.lastIndexOf(",") + 1).replace(SPACES, "");
      if (last.toLowerCase() === "chunked") {
        this.#state = State.ChunkSize;
      } else {
        this.#state = State.UntilClose;
        this.#reusable = false;
      }
    } else if (length !== undefined) {
      if (!DIGITS.test(length)) {
        throw new UpstreamResponseError(`Invalid Content-Length ${JSON.stringify(length)}`);
      }
      this.#remaining = Number(length);
      this.#state = this.#remaining === 0 ? State.Done : State.Length;
    } else {
      this.#state = State.UntilClose;
      this.#reusable = false;
    }
    return { minor, status: code, statusText: status[3] ?? "", rawHeaders };
  }
}

/** Where the line from `start` to the LF at `lf` ends, without a CR before the LF. */
function lineEnd(text: string, lf: number, start: number): number {
  return lf > start && text.charCodeAt(lf - 1) === CR ? lf - 1 : lf;
}

/**
 * The field value in `text` from `from` to `to`, trimmed of spaces and tabs, refused if it
 * holds a control character other than HT. By index: a header's value most often has one
 * space before it and none after, and a regex replace costs more than the whole line's parse.
 */
function fieldValue(text: string, from: number, to: number): string {
  let start = from;
  let end = to;
  while (start < end && isBlank(text.charCodeAt(start))) start++;
  while (end > start && isBlank(text.charCodeAt(end - 1))) end--;
  const value = text.slice(start, end);
  if (CONTROL.test(value)) {
    throw new UpstreamResponseError(
      `A control character in the header field value ${JSON.stringify(value.slice(0, 100))}`,
    );
  }
  return value;
}

function isBlank(code: number): boolean {
  return code === 0x20 || code === 0x09;
}
