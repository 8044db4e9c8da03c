/**
 * The agent's sans-I/O HTTP/1.1 response parser (`agent/_http1_response.ts`), black-box: the
 * status lines and header fields it takes or refuses, how it frames a body (Content-Length,
 * chunked, until the upstream closes, none), when the connection stays reusable, its head size
 * limit and what `end()` says. Each input is fed whole, split in two at every byte and one byte at
 * a time, and all three must give the same events.
 *
 * @module
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  type ResponseEvent,
  ResponseParser,
  UpstreamResponseError,
} from "../agent/_http1_response.ts";

/** Each character is one byte, its latin1 code: `"\xe9"` is the byte 0xE9. */
function bytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    // A character above 0xFF is a slip in the test itself; truncating it would hide that.
    if (code > 0xff) throw new RangeError(`not latin1 at ${i}: ${JSON.stringify(text)}`);
    out[i] = code;
  }
  return out;
}

/** Every byte value once, 0x00 to 0xFF, as latin1 text. */
const ALL_BYTES = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));

function head(
  status: number,
  statusText: string,
  rawHeaders: string[] = [],
  minor = 1,
): ResponseEvent {
  return { kind: "head", head: { minor, status, statusText, rawHeaders } };
}

function body(text: string): ResponseEvent {
  return { kind: "body", bytes: bytes(text) };
}

function ended(reusable: boolean): ResponseEvent {
  return { kind: "end", reusable };
}

interface FeedOptions {
  /** Call `end()` after the input, as when the upstream closes. */
  end?: boolean;
  /** For the constructor; left out when absent, so that its default applies. */
  maxHeadBytes?: number;
}

interface Outcome {
  events: ResponseEvent[];
  error?: unknown;
  thrownBy?: "receive" | "end";
}

/**
 * The events in the spec's shape only, with consecutive body events made one. Done after the
 * last call, not as each event comes: a body event must keep its bytes after later calls, since
 * whoever forwards them may still hold them.
 */
function merged(events: ResponseEvent[]): ResponseEvent[] {
  const out: ResponseEvent[] = [];
  for (const event of events) {
    const last = out.at(-1);
    if (event.kind === "body" && last?.kind === "body") {
      const joined = new Uint8Array(last.bytes.length + event.bytes.length);
      joined.set(last.bytes);
      joined.set(event.bytes, last.bytes.length);
      out[out.length - 1] = { kind: "body", bytes: joined };
    } else if (event.kind === "head") {
      const { minor, status, statusText, rawHeaders } = event.head;
      out.push({ kind: "head", head: { minor, status, statusText, rawHeaders: [...rawHeaders] } });
    } else if (event.kind === "body") {
      // A copy, so that a Buffer (another prototype) compares equal to a Uint8Array.
      out.push({ kind: "body", bytes: Uint8Array.from(event.bytes) });
    } else {
      out.push({ kind: "end", reusable: event.reusable });
    }
  }
  return out;
}

function feed(method: string, chunks: Uint8Array[], options: FeedOptions): Outcome {
  const parser = options.maxHeadBytes === undefined
    ? new ResponseParser(method)
    : new ResponseParser(method, options.maxHeadBytes);
  const events: ResponseEvent[] = [];
  try {
    for (const chunk of chunks) events.push(...parser.receive(chunk));
  } catch (error) {
    return { events: merged(events), error, thrownBy: "receive" };
  }
  if (options.end) {
    try {
      events.push(...parser.end());
    } catch (error) {
      return { events: merged(events), error, thrownBy: "end" };
    }
  }
  return { events: merged(events) };
}

/** Past this size only the whole and byte-at-a-time feedings run, to keep the suite quick. */
const SPLIT_EVERYWHERE_MAX = 2048;

/**
 * The ways to feed `data`. The pieces are views into one buffer, at offsets other than 0, as
 * socket reads often are.
 */
function ways(data: Uint8Array, splits: boolean): [string, Uint8Array[]][] {
  const out: [string, Uint8Array[]][] = [["whole", [data]]];
  if (!splits) return out;
  if (data.length <= SPLIT_EVERYWHERE_MAX) {
    for (let at = 1; at < data.length; at++) {
      out.push([`split at byte ${at}`, [data.subarray(0, at), data.subarray(at)]]);
    }
  }
  const single = Array.from({ length: data.length }, (_, i) => data.subarray(i, i + 1));
  out.push(["one byte per receive()", single]);
  return out;
}

function shown(error: unknown): string {
  if (error === undefined) return "nothing thrown";
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

function assertUpstreamError(error: unknown, where: string): void {
  assert.ok(
    error instanceof UpstreamResponseError,
    `${where}: expected an UpstreamResponseError, got ${shown(error)}`,
  );
  assert.equal(error.name, "UpstreamResponseError");
}

/**
 * Feeds `input` whole and, when `splits`, split at every byte and one byte per call; asserts that
 * nothing throws and that all give the same events (consecutive body events merged).
 *
 * @returns The events.
 */
function parse(
  method: string,
  input: string | Uint8Array,
  splits = true,
  options: FeedOptions = {},
): ResponseEvent[] {
  const data = typeof input === "string" ? bytes(input) : input;
  let first: ResponseEvent[] | undefined;
  for (const [way, chunks] of ways(data, splits)) {
    const outcome = feed(method, chunks, options);
    if (outcome.thrownBy !== undefined) {
      assert.fail(`${way}: ${outcome.thrownBy}() threw ${shown(outcome.error)}`);
    }
    if (first === undefined) first = outcome.events;
    else assert.deepEqual(outcome.events, first, `${way} gives other events than whole`);
  }
  return first ?? [];
}

/** Asserts that each way of feeding `input` throws an UpstreamResponseError. */
function rejects(
  method: string,
  input: string | Uint8Array,
  splits = true,
  options: FeedOptions = {},
): void {
  const data = typeof input === "string" ? bytes(input) : input;
  for (const [way, chunks] of ways(data, splits)) {
    assertUpstreamError(feed(method, chunks, options).error, way);
  }
}

/**
 * Feeds `input`, which receive() must take, each way, then asserts that end() throws an
 * UpstreamResponseError.
 *
 * @returns The events receive() gave before.
 */
function cutShort(method: string, input: string): ResponseEvent[] {
  let first: ResponseEvent[] | undefined;
  for (const [way, chunks] of ways(bytes(input), true)) {
    const outcome = feed(method, chunks, { end: true });
    if (outcome.thrownBy === "receive") {
      assert.fail(`${way}: receive() threw ${shown(outcome.error)}`);
    }
    assertUpstreamError(outcome.error, `${way}, end()`);
    if (first === undefined) first = outcome.events;
    else assert.deepEqual(outcome.events, first, `${way} gives other events than whole`);
  }
  return first ?? [];
}

describe("ResponseParser: the status line", () => {
  const cases: [string, number, number, string][] = [
    ["HTTP/1.1 200 OK", 1, 200, "OK"],
    ["HTTP/1.0 404 Not Found", 0, 404, "Not Found"],
    ["HTTP/1.1 204", 1, 204, ""],
    ["HTTP/1.1 200 ", 1, 200, ""],
    ["HTTP/1.1 200 Caf\xe9", 1, 200, "Caf\xe9"],
    ["HTTP/1.1 599 Whatever: the reason, as sent", 1, 599, "Whatever: the reason, as sent"],
  ];
  for (const [line, minor, status, statusText] of cases) {
    it(
      `reads ${JSON.stringify(line)} as minor ${minor}, status ${status}, reason ${
        JSON.stringify(statusText)
      }`,
      () => {
        assert.deepEqual(parse("GET", `${line}\r\nContent-Length: 0\r\n\r\n`), [
          head(status, statusText, ["Content-Length", "0"], minor),
          ended(minor === 1),
        ]);
      },
    );
  }

  const invalid = [
    "HTTP/2 200 OK",
    "HTTP/1.1 20 OK",
    "HTTP/1.1 2000 OK",
    "HTTP/1.1 abc OK",
    "ICY 200 OK",
    "HTTP/1.1  200 OK",
    "hello",
    // RFC 9112: HTTP-version is the case-sensitive "HTTP/" DIGIT "." DIGIT, and SP follows the
    // status code; a reason phrase has no control characters other than HT.
    "http/1.1 200 OK",
    "HTTP/1.10 200 OK",
    "HTTP/1.1 200OK",
    "HTTP/1.1 200 O\x00K",
  ];
  for (const line of invalid) {
    it(`throws an UpstreamResponseError on the status line ${JSON.stringify(line)}`, () => {
      rejects("GET", `${line}\r\n\r\n`);
    });
  }
});

describe("ResponseParser: line endings", () => {
  it("takes a bare LF as the end of every line of the head", () => {
    assert.deepEqual(parse("GET", "HTTP/1.1 200 OK\nContent-Length: 2\nX-A: b\n\nhi"), [
      head(200, "OK", ["Content-Length", "2", "X-A", "b"]),
      body("hi"),
      ended(true),
    ]);
  });

  it("takes CRLF and bare LF mixed in one head", () => {
    assert.deepEqual(parse("GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\nX-A: b\r\n\nhi"), [
      head(200, "OK", ["Content-Length", "2", "X-A", "b"]),
      body("hi"),
      ended(true),
    ]);
    assert.deepEqual(parse("GET", "HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nhi"), [
      head(200, "OK", ["Content-Length", "2"]),
      body("hi"),
      ended(true),
    ]);
  });
});

describe("ResponseParser: header fields", () => {
  /** The raw headers of a 200 response with `fields` (each ending its line) and no body. */
  function rawHeadersOf(fields: string): string[] {
    const events = parse("GET", `HTTP/1.1 200 OK\r\n${fields}Content-Length: 0\r\n\r\n`);
    assert.equal(events.length, 2, "a head and an end");
    assert.ok(events[0].kind === "head");
    return events[0].head.rawHeaders.slice(0, -2);
  }

  it("keeps the fields' order, repeats and the case of their names", () => {
    assert.deepEqual(
      rawHeadersOf("X-First: 1\r\ncontent-TYPE: text/plain\r\nX-First: 2\r\nset-cookie: a=b\r\n"),
      ["X-First", "1", "content-TYPE", "text/plain", "X-First", "2", "set-cookie", "a=b"],
    );
  });

  it("trims leading and trailing spaces and tabs off values and keeps those inside", () => {
    assert.deepEqual(rawHeadersOf("X-A:   v  \t\r\nX-B:\tw\r\nX-C: a  \t b\r\n"), [
      "X-A",
      "v",
      "X-B",
      "w",
      "X-C",
      "a  \t b",
    ]);
  });

  it("takes an empty value, with or without whitespace after the colon", () => {
    assert.deepEqual(rawHeadersOf("X-Empty:\r\nX-Blank:  \t \r\n"), ["X-Empty", "", "X-Blank", ""]);
  });

  it("keeps a colon inside a value", () => {
    assert.deepEqual(rawHeadersOf("Location: http://example.com:8080/a?b=c:d\r\n"), [
      "Location",
      "http://example.com:8080/a?b=c:d",
    ]);
  });

  it("joins an obs-fold continuation line to the value with one SP", () => {
    assert.deepEqual(rawHeadersOf("X-Fold: a\r\n  b\r\nX-After: c\r\n"), [
      "X-Fold",
      "a b",
      "X-After",
      "c",
    ]);
  });

  it("joins continuation lines that start with HT, trimming both sides of each", () => {
    assert.deepEqual(rawHeadersOf("X-Tab: a\r\n\tb\r\nX-Multi: a \t\r\n b \r\n\t c\r\n"), [
      "X-Tab",
      "a b",
      "X-Multi",
      "a b c",
    ]);
  });

  it("keeps a HT inside a value", () => {
    assert.deepEqual(rawHeadersOf("X-T: a\tb\r\n"), ["X-T", "a\tb"]);
  });

  it("takes obs-text bytes 0x80 to 0xFF in a value as latin1 characters", () => {
    assert.deepEqual(rawHeadersOf("X-L: caf\xe9 \x80\xff\r\n"), ["X-L", "caf\xe9 \x80\xff"]);
  });

  it("takes every token character in a field name", () => {
    const name = "!#$%&'*+-.^_`|~09AZaz";
    assert.deepEqual(rawHeadersOf(`${name}: v\r\n`), [name, "v"]);
  });

  it("throws an UpstreamResponseError on an obs-fold line before any field", () => {
    rejects("GET", "HTTP/1.1 200 OK\r\n X-A: a\r\nContent-Length: 0\r\n\r\n");
    rejects("GET", "HTTP/1.1 200 OK\r\n\tX-A: a\r\nContent-Length: 0\r\n\r\n");
  });

  const invalid = [
    "X-A : v",
    "X-A\t: v",
    ": v",
    "X(A): v",
    "X A: v",
    "X\xe9: v",
    "NoColon",
    "X-A: a\x00b",
    "X-A: a\x01b",
    "X-A: a\x7fb",
    "X-A: a\rb",
    "X-A: a\r\r",
  ];
  for (const field of invalid) {
    it(`throws an UpstreamResponseError on the field line ${JSON.stringify(field)}`, () => {
      rejects("GET", `HTTP/1.1 200 OK\r\n${field}\r\nContent-Length: 0\r\n\r\n`);
    });
  }
});

describe("ResponseParser: Content-Length", () => {
  it("gives the body of exactly Content-Length bytes, then a reusable end", () => {
    assert.deepEqual(parse("GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), [
      head(200, "OK", ["Content-Length", "5"]),
      body("hello"),
      ended(true),
    ]);
  });

  it("gives a head and an end and no body event for Content-Length: 0", () => {
    assert.deepEqual(parse("GET", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), [
      head(200, "OK", ["Content-Length", "0"]),
      ended(true),
    ]);
  });

  it("finds Content-Length whatever the case of its name", () => {
    assert.deepEqual(parse("GET", "HTTP/1.1 200 OK\r\ncontent-LENGTH: 3\r\n\r\nabc"), [
      head(200, "OK", ["content-LENGTH", "3"]),
      body("abc"),
      ended(true),
    ]);
  });

  it("gives the part of a body that has come without waiting for the rest", () => {
    assert.deepEqual(parse("GET", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"), [
      head(200, "OK", ["Content-Length", "10"]),
      body("hello"),
    ]);
  });

  it("takes a Content-Length of 15 digits, leading zeros included", () => {
    assert.deepEqual(
      parse("GET", "HTTP/1.1 200 OK\r\nContent-Length: 000000000000003\r\n\r\nabc"),
      [head(200, "OK", ["Content-Length", "000000000000003"]), body("abc"), ended(true)],
    );
    assert.deepEqual(parse("GET", "HTTP/1.1 200 OK\r\nContent-Length: 999999999999999\r\n\r\n"), [
      head(200, "OK", ["Content-Length", "999999999999999"]),
    ]);
  });

  const invalid = ["5a", "-1", " ", "5, 5", "+5", "0x5", "5 5", "1234567890123456"];
  for (const value of invalid) {
    it(`throws an UpstreamResponseError on Content-Length: ${JSON.stringify(value)}`, () => {
      rejects("GET", `HTTP/1.1 200 OK\r\nContent-Length: ${value}\r\n\r\nhello`);
    });
  }

  it("throws an UpstreamResponseError on two Content-Length fields, even equal ones", () => {
    rejects("GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello");
    rejects("GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\nhello!");
  });
});

describe("ResponseParser: chunked", () => {
  const CHUNKED = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

  it("gives the chunks' data as the body, then a reusable end after the last chunk", () => {
    assert.deepEqual(parse("GET", `${CHUNKED}5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`), [
      head(200, "OK", ["Transfer-Encoding", "chunked"]),
      body("hello world"),
      ended(true),
    ]);
  });

  it("finds chunked whatever its case and the case of Transfer-Encoding", () => {
    assert.deepEqual(
      parse("GET", "HTTP/1.1 200 OK\r\ntransfer-ENCODING: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
      [head(200, "OK", ["transfer-ENCODING", "Chunked"]), body("ok"), ended(true)],
    );
    assert.deepEqual(
      parse("GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
      [head(200, "OK", ["Transfer-Encoding", "CHUNKED"]), body("ok"), ended(true)],
    );
  });

  it("reads chunk sizes in hex, lower and upper case", () => {
    const ten = "0123456789";
    const thirtyOne = "abcdefghijklmnopqrstuvwxyz01234";
    const input =
      `${CHUNKED}a\r\n${ten}\r\nA\r\n${ten}\r\n1F\r\n${thirtyOne}\r\n1f\r\n${thirtyOne}` +
      `\r\n0\r\n\r\n`;
    assert.deepEqual(parse("GET", input).slice(1), [
      body(ten + ten + thirtyOne + thirtyOne),
      ended(true),
    ]);
  });

  it("takes a chunk size of 15 hex digits, leading zeros included", () => {
    assert.deepEqual(parse("GET", `${CHUNKED}000000000000003\r\nabc\r\n0\r\n\r\n`).slice(1), [
      body("abc"),
      ended(true),
    ]);
  });

  it("ignores chunk extensions, with or without whitespace around the semicolon", () => {
    const input = `${CHUNKED}5;name=value\r\nhello\r\n5 ; x\r\nworld\r\n3;a="b;c d"\r\n!!!\r\n` +
      `0;last\r\n\r\n`;
    assert.deepEqual(parse("GET", input).slice(1), [body("helloworld!!!"), ended(true)]);
  });

  it("reads trailer fields after the last chunk and shows them in no event", () => {
    const input = `${CHUNKED}2\r\nok\r\n0\r\nX-Trailer: v\r\nX-Other: w\r\n\r\n`;
    assert.deepEqual(parse("GET", input), [
      head(200, "OK", ["Transfer-Encoding", "chunked"]),
      body("ok"),
      ended(true),
    ]);
  });

  it("treats chunk data as opaque, CRLFs and size-like text included", () => {
    const data = "a\r\n0\r\n\r\nb";
    const input = `${CHUNKED}${data.length.toString(16)}\r\n${data}\r\n0\r\n\r\n`;
    assert.deepEqual(parse("GET", input).slice(1), [body(data), ended(true)]);
  });

  it("gives no body event for a body of the last chunk only", () => {
    assert.deepEqual(parse("GET", `${CHUNKED}0\r\n\r\n`), [
      head(200, "OK", ["Transfer-Encoding", "chunked"]),
      ended(true),
    ]);
  });

  it("gives a chunk's data as it comes, without waiting for the end of the chunk", () => {
    // A chunk may be far larger than anything worth holding in memory.
    assert.deepEqual(parse("GET", `${CHUNKED}a\r\nhello`).slice(1), [body("hello")]);
  });

  it("takes chunked as the last of several codings, in one field or across fields", () => {
    assert.deepEqual(
      parse(
        "GET",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
      ).slice(1),
      [body("ok"), ended(true)],
    );
    // RFC 9110 5.3: field lines of one name make one list.
    const split = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n" +
      "\r\n2\r\nok\r\n0\r\n\r\n";
    assert.deepEqual(parse("GET", split).slice(1), [body("ok"), ended(true)]);
  });

  for (const codings of ["gzip", "chunked, gzip"]) {
    it(`reads the body until the upstream closes for Transfer-Encoding: ${codings}`, () => {
      const input = `HTTP/1.1 200 OK\r\nTransfer-Encoding: ${codings}\r\n\r\n2\r\nok\r\n0\r\n\r\n`;
      const events = [
        head(200, "OK", ["Transfer-Encoding", codings]),
        body("2\r\nok\r\n0\r\n\r\n"),
      ];
      assert.deepEqual(parse("GET", input), events);
      assert.deepEqual(parse("GET", input, true, { end: true }), [...events, ended(false)]);
    });
  }

  const invalidSizes = ["g", "", "-1", "1000000000000000", "0x3"];
  for (const size of invalidSizes) {
    it(`throws an UpstreamResponseError on the chunk size ${JSON.stringify(size)}`, () => {
      rejects("GET", `${CHUNKED}${size}\r\nabc\r\n0\r\n\r\n`);
    });
  }

  it("throws an UpstreamResponseError when chunk data is not followed by CRLF", () => {
    rejects("GET", `${CHUNKED}3\r\nabcX`);
    rejects("GET", `${CHUNKED}3\r\nabc\rX`);
  });

  it("throws an UpstreamResponseError on Transfer-Encoding with Content-Length", () => {
    rejects(
      "GET",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    );
    rejects(
      "GET",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    );
  });
});

describe("ResponseParser: a body read until the upstream closes", () => {
  it("gives the head and body with neither Content-Length nor Transfer-Encoding, and no end", () => {
    assert.deepEqual(parse("GET", "HTTP/1.1 200 OK\r\nX-A: b\r\n\r\nsome body"), [
      head(200, "OK", ["X-A", "b"]),
      body("some body"),
    ]);
  });

  it("ends such a body, not reusable, when the upstream closes", () => {
    assert.deepEqual(parse("GET", "HTTP/1.1 200 OK\r\n\r\nsome body", true, { end: true }), [
      head(200, "OK"),
      body("some body"),
      ended(false),
    ]);
    assert.deepEqual(parse("GET", "HTTP/1.1 200 OK\r\n\r\n", true, { end: true }), [
      head(200, "OK"),
      ended(false),
    ]);
    assert.deepEqual(parse("GET", "HTTP/1.0 200 OK\r\n\r\nold", true, { end: true }), [
      head(200, "OK", [], 0),
      body("old"),
      ended(false),
    ]);
  });
});

describe("ResponseParser: responses without a body", () => {
  it("ends a response to HEAD at its head, whatever its Content-Length says", () => {
    assert.deepEqual(parse("HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"), [
      head(200, "OK", ["Content-Length", "10"]),
      ended(true),
    ]);
  });

  it("ends a response to HEAD at its head when chunked or with no framing at all", () => {
    // RFC 9112 6.3: a response to HEAD ends at the empty line after its fields, always.
    assert.deepEqual(parse("HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), [
      head(200, "OK", ["Transfer-Encoding", "chunked"]),
      ended(true),
    ]);
    assert.deepEqual(parse("HEAD", "HTTP/1.1 200 OK\r\n\r\n"), [head(200, "OK"), ended(true)]);
  });

  for (const [status, reason] of [[204, "No Content"], [304, "Not Modified"]] as const) {
    it(`ends a ${status} response at its head`, () => {
      assert.deepEqual(parse("GET", `HTTP/1.1 ${status} ${reason}\r\n\r\n`), [
        head(status, reason),
        ended(true),
      ]);
    });
  }

  it("ends a 304 response at its head even with a Content-Length", () => {
    // RFC 9110 8.6: a 304's Content-Length is that of the representation it did not send.
    assert.deepEqual(parse("GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"), [
      head(304, "Not Modified", ["Content-Length", "10"]),
      ended(true),
    ]);
  });

  it("frames a 205 response like any other", () => {
    assert.deepEqual(parse("GET", "HTTP/1.1 205 Reset Content\r\nContent-Length: 0\r\n\r\n"), [
      head(205, "Reset Content", ["Content-Length", "0"]),
      ended(true),
    ]);
    // RFC 9110 15.3.6: closing the connection after the head is one way a 205 says "no content".
    assert.deepEqual(parse("GET", "HTTP/1.1 205 Reset Content\r\n\r\n"), [
      head(205, "Reset Content"),
    ]);
    assert.deepEqual(parse("GET", "HTTP/1.1 205 Reset Content\r\n\r\n", true, { end: true }), [
      head(205, "Reset Content"),
      ended(false),
    ]);
  });
});

describe("ResponseParser: interim responses", () => {
  it("skips 100, 102 and 103 heads and gives only the final one", () => {
    const input = "HTTP/1.1 100 Continue\r\n\r\n" +
      "HTTP/1.1 102 Processing\r\n\r\n" +
      "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    assert.deepEqual(parse("GET", input), [
      head(200, "OK", ["Content-Length", "2"]),
      body("ok"),
      ended(true),
    ]);
  });

  it("gives no event for an interim head on its own", () => {
    assert.deepEqual(parse("GET", "HTTP/1.1 100 Continue\r\n\r\n"), []);
  });

  it("throws an UpstreamResponseError on a 101 response", () => {
    rejects(
      "GET",
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
  });
});

describe("ResponseParser: reusable", () => {
  const cases: [string, string, boolean][] = [
    [
      "a plain HTTP/1.1 Content-Length response",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
      true,
    ],
    [
      "a plain HTTP/1.1 chunked response",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
      true,
    ],
    [
      "an HTTP/1.1 response with Connection: keep-alive",
      "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
      true,
    ],
    [
      // RFC 9110 7.6.1: Connection holds tokens; "closed" is not "close".
      "an HTTP/1.1 response with Connection: closed",
      "HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 2\r\n\r\nok",
      true,
    ],
    [
      "an HTTP/1.0 response with a Content-Length",
      "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
      false,
    ],
    [
      "a response with Connection: close",
      "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
      false,
    ],
    [
      "a response with Connection: Keep-Alive, Close",
      "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 2\r\n\r\nok",
      false,
    ],
    [
      "a response with connection: CLOSE",
      "HTTP/1.1 200 OK\r\nconnection: CLOSE\r\nContent-Length: 2\r\n\r\nok",
      false,
    ],
    [
      "a response whose second Connection field says close",
      "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
      false,
    ],
    [
      "a chunked response with Connection: close",
      "HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
      false,
    ],
    [
      "a 204 response with Connection: close",
      "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
      false,
    ],
  ];
  for (const [what, input, reusable] of cases) {
    it(`says ${reusable ? "reusable" : "not reusable"} at the end of ${what}`, () => {
      assert.deepEqual(parse("GET", input).at(-1), ended(reusable));
    });
  }

  // Bytes after the end in the same receive() can only be the upstream misbehaving; after the
  // end in a later call is another matter, so these feed the input whole only.
  it("says not reusable when bytes follow a Content-Length body in the same receive()", () => {
    assert.deepEqual(parse("GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokjunk", false), [
      head(200, "OK", ["Content-Length", "2"]),
      body("ok"),
      ended(false),
    ]);
  });

  it("says not reusable when bytes follow the last chunk in the same receive()", () => {
    const input = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\njunk";
    assert.deepEqual(parse("GET", input, false).slice(1), [body("ok"), ended(false)]);
  });

  it("says not reusable when a bodiless response comes with bytes after its head", () => {
    assert.deepEqual(parse("GET", "HTTP/1.1 204 No Content\r\n\r\nbody anyway", false), [
      head(204, "No Content"),
      ended(false),
    ]);
    assert.deepEqual(parse("HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false), [
      head(200, "OK", ["Content-Length", "2"]),
      ended(false),
    ]);
  });
});

describe("ResponseParser: head size", () => {
  it("throws an UpstreamResponseError on a head larger than maxHeadBytes", () => {
    const input = `HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(300)}\r\nContent-Length: 0\r\n\r\n`;
    rejects("GET", input, true, { maxHeadBytes: 256 });
  });

  it("throws an UpstreamResponseError once an unfinished head passes maxHeadBytes", () => {
    // Waiting for the end of the line would let an upstream fill the agent's memory.
    rejects("GET", `HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(300)}`, true, { maxHeadBytes: 256 });
  });

  it("takes a head just under maxHeadBytes, whatever the body bytes after it", () => {
    const start = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nX-Pad: ";
    const pad = "p".repeat(255 - start.length - "\r\n\r\n".length);
    const headText = `${start}${pad}\r\n\r\n`;
    assert.equal(headText.length, 255);
    const content = "b".repeat(100);
    assert.deepEqual(parse("GET", headText + content, true, { maxHeadBytes: 256 }), [
      head(200, "OK", ["Content-Length", "100", "X-Pad", pad]),
      body(content),
      ended(true),
    ]);
  });

  it("throws an UpstreamResponseError on a 20 KB header value by default", () => {
    rejects(
      "GET",
      `HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(20 * 1024)}\r\nContent-Length: 0\r\n\r\n`,
    );
  });

  it("takes a 15 000 byte header value by default", () => {
    const value = "a".repeat(15_000);
    assert.deepEqual(
      parse("GET", `HTTP/1.1 200 OK\r\nX-Big: ${value}\r\nContent-Length: 0\r\n\r\n`),
      [head(200, "OK", ["X-Big", value, "Content-Length", "0"]), ended(true)],
    );
  });
});

describe("ResponseParser: end()", () => {
  it("throws an UpstreamResponseError when the upstream closes before sending a byte", () => {
    const parser = new ResponseParser("GET");
    assert.throws(() => parser.end(), (error) => {
      assertUpstreamError(error, "end()");
      return true;
    });
  });

  const cases: [string, string, ResponseEvent[]][] = [
    ["the status line", "HTTP/1.1 20", []],
    ["a field line", "HTTP/1.1 200 OK\r\nX-A: b", []],
    ["the head, before its empty line", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", []],
    ["the head, after an interim response", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200", []],
    ["an interim response and before the final one", "HTTP/1.1 100 Continue\r\n\r\n", []],
    [
      "a Content-Length body",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe",
      [head(200, "OK", ["Content-Length", "5"]), body("he")],
    ],
    [
      "a chunk's data",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
      [head(200, "OK", ["Transfer-Encoding", "chunked"]), body("ab")],
    ],
    [
      "a chunk size line",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3",
      [head(200, "OK", ["Transfer-Encoding", "chunked"]), body("ok")],
    ],
    [
      "the CRLF after a chunk's data",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc",
      [head(200, "OK", ["Transfer-Encoding", "chunked"]), body("abc")],
    ],
    [
      "the empty line after the last chunk",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n",
      [head(200, "OK", ["Transfer-Encoding", "chunked"]), body("ok")],
    ],
    [
      "the trailer fields",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: v\r\n",
      [head(200, "OK", ["Transfer-Encoding", "chunked"]), body("ok")],
    ],
  ];
  for (const [where, input, events] of cases) {
    it(`throws an UpstreamResponseError when the upstream closes in ${where}`, () => {
      assert.deepEqual(cutShort("GET", input), events);
    });
  }

  it("returns nothing when the response was already over", () => {
    assert.deepEqual(
      parse("GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true, { end: true }),
      [head(200, "OK", ["Content-Length", "2"]), body("ok"), ended(true)],
    );
    const parser = new ResponseParser("GET");
    parser.receive(bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
    assert.deepEqual(parser.end(), []);
  });
});

describe("ResponseParser: events", () => {
  it("gives every byte value through unchanged in a Content-Length body", () => {
    const input = `HTTP/1.1 200 OK\r\nContent-Length: 256\r\n\r\n${ALL_BYTES}`;
    assert.deepEqual(parse("GET", input).slice(1), [body(ALL_BYTES), ended(true)]);
  });

  it("gives every byte value through unchanged in a chunked body", () => {
    const input = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
      `80\r\n${ALL_BYTES.slice(0, 128)}\r\n80\r\n${ALL_BYTES.slice(128)}\r\n0\r\n\r\n`;
    assert.deepEqual(parse("GET", input).slice(1), [body(ALL_BYTES), ended(true)]);
  });

  it("gives every byte value through unchanged in a body read until the upstream closes", () => {
    const input = `HTTP/1.1 200 OK\r\n\r\n${ALL_BYTES}`;
    assert.deepEqual(parse("GET", input, true, { end: true }).slice(1), [
      body(ALL_BYTES),
      ended(false),
    ]);
  });

  it("gives the head with the head's last byte and the end with the message's last byte", () => {
    for (
      const input of [
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: v\r\n\r\n",
      ]
    ) {
      const data = bytes(input);
      const parser = new ResponseParser("GET");
      const kinds: string[] = [];
      for (let at = 0; at < data.length; at++) {
        for (const event of parser.receive(data.subarray(at, at + 1))) {
          if (event.kind !== "body") kinds.push(`${event.kind} at ${at}`);
        }
      }
      const headEnd = input.indexOf("\r\n\r\n") + 3;
      assert.deepEqual(kinds, [`head at ${headEnd}`, `end at ${data.length - 1}`], input);
    }
  });

  it("returns no event for an empty receive()", () => {
    const parser = new ResponseParser("GET");
    assert.deepEqual(parser.receive(new Uint8Array(0)), []);
    assert.equal(parser.receive(bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")).length, 1);
    assert.deepEqual(parser.receive(new Uint8Array(0)), []);
    assert.deepEqual(merged(parser.receive(bytes("ok"))), [body("ok"), ended(true)]);
  });

  it("throws errors that are UpstreamResponseErrors, named so, and Errors", () => {
    const parser = new ResponseParser("GET");
    assert.throws(() => parser.receive(bytes("ICY 200 OK\r\n\r\n")), (error) => {
      assert.ok(error instanceof UpstreamResponseError);
      assert.ok(error instanceof Error);
      assert.equal(error.name, "UpstreamResponseError");
      return true;
    });
  });
});
