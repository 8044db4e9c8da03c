import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CloseCode,
  decodeGoAway,
  decodeJson,
  decodePing,
  decodeRequestHead,
  decodeReset,
  decodeResponseHead,
  decodeWindowUpdate,
  encodeGoAway,
  encodeJson,
  encodePing,
  encodeRequestHead,
  encodeReset,
  encodeResponseHead,
  encodeWindowUpdate,
  ProtocolError,
  ResetCode,
} from "../protocol/mod.ts";

const utf8 = new TextEncoder();

/** Encodes a varint the way the header block does (LEB128). */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

/** Builds a header block by hand: a count, then each string as a length and its bytes. */
function block(strings: (string | Uint8Array)[], count = strings.length): Uint8Array {
  const out: number[] = varint(count);
  for (const s of strings) {
    const bytes = typeof s === "string" ? utf8.encode(s) : s;
    out.push(...varint(bytes.byteLength), ...bytes);
  }
  return new Uint8Array(out);
}

function assertProtocolError(fn: () => unknown, message?: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected ProtocolError, got ${error}`);
    assert.equal(error.code, CloseCode.ProtocolError);
    if (message) assert.match(error.message, message);
    return true;
  });
}

describe("encodeRequestHead() and decodeRequestHead()", () => {
  it("round-trip a simple request", () => {
    const head = {
      method: "GET",
      url: "/pets?limit=2",
      headers: [["accept", "*/*"]] as [
        string,
        string,
      ][],
    };
    assert.deepEqual(decodeRequestHead(encodeRequestHead(head)), head);
  });

  it("round-trip a request with no headers and an absolute URL", () => {
    const head = { method: "DELETE", url: "https://example.test/a/b#frag", headers: [] };
    assert.deepEqual(decodeRequestHead(encodeRequestHead(head)), head);
  });

  it("round-trip unicode in the URL and header values", () => {
    const head = {
      method: "PUT",
      url: "/café/日本語?q=🙂",
      headers: [["x-name", "Zoë 🙂 ünïcödé"], ["X-Upper-Case", "kept as given"]] as [
        string,
        string,
      ][],
    };
    assert.deepEqual(decodeRequestHead(encodeRequestHead(head)), head);
  });

  it("round-trip many headers in order, with repeats and empty values", () => {
    const headers: [string, string][] = [];
    for (let i = 0; i < 500; i++) headers.push([`x-h${i}`, "v".repeat(i)]);
    headers.push(["set-cookie", "a=1"], ["set-cookie", "b=2"], ["x-empty", ""]);
    const head = { method: "POST", url: "/", headers };
    assert.deepEqual(decodeRequestHead(encodeRequestHead(head)), head);
  });

  it("round-trip a string longer than 127 and 16383 bytes (multi-byte lengths)", () => {
    const head = {
      method: "PATCH",
      url: "/" + "a".repeat(200),
      headers: [["x-big", "b".repeat(20_000)]] as [string, string][],
    };
    assert.deepEqual(decodeRequestHead(encodeRequestHead(head)), head);
  });

  it("decodes each string exactly while it reuses strings seen before, whatever shares a slot", () => {
    // Short ASCII strings are compared with the last string decoded in their hash slot. Far
    // more strings than slots, of equal lengths, differing in one character or in order,
    // decoded again and again in shuffled order: every one must come back as itself.
    const strings: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const n = i % 64;
      strings.push(
        (i.toString(36) + "x".repeat(64)).slice(0, n),
        ("y".repeat(64) + i.toString(36)).slice(-n || 64),
      );
    }
    strings.push("ab", "ba", "", "a", "b", "aa");
    let seed = 7;
    const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < strings.length; i += 2) {
        const j = Math.floor(random() * strings.length);
        const name = strings[j];
        const value = strings[(j + 1 + round) % strings.length];
        const head = { method: "GET", url: "/" + name, headers: [[name || "n", value]] };
        assert.deepEqual(decodeRequestHead(encodeRequestHead(head as never)), head);
      }
    }
  });

  it("accepts every token character in the method", () => {
    const method = "!#$%&'*+-.^_`|~09AZaz";
    assert.equal(decodeRequestHead(block([method, "/"])).method, method);
  });

  it("encodeRequestHead() writes count, then length-prefixed UTF-8 strings", () => {
    assert.deepEqual(
      [...encodeRequestHead({ method: "GET", url: "/", headers: [["a", "é"]] })],
      [4, 3, 0x47, 0x45, 0x54, 1, 0x2f, 1, 0x61, 2, 0xc3, 0xa9],
    );
  });

  it("encodes exactly as the reference block and round-trips across the ASCII fast paths", () => {
    // ASCII blocks are sized exactly and short ASCII strings are read char by char; a
    // non-ASCII string anywhere (even the last) must fall back for the whole block.
    const values = [0, 1, 63, 64, 65, 127, 128, 300].flatMap((n) => {
      const ascii = "v".repeat(n);
      return [ascii, ascii + "é", "€" + ascii, ascii + "\u{1F600}"];
    });
    for (const last of ["plain", "ünï"]) {
      const head = {
        method: "POST",
        url: "/x",
        headers: [...values.map((v, i): [string, string] => [`h${i}`, v]), ["z", last]] as [
          string,
          string,
        ][],
      };
      const bytes = encodeRequestHead(head);
      assert.deepEqual(
        [...bytes],
        [...block(["POST", "/x", ...head.headers.flat()])],
        `last header ${last}`,
      );
      assert.deepEqual(decodeRequestHead(bytes), head);
    }
  });
});

describe("encodeResponseHead() and decodeResponseHead()", () => {
  it("round-trip a response with headers", () => {
    const head = {
      status: 201,
      statusText: "Created",
      headers: [["location", "/pets/1"], ["content-type", "application/json"]] as [
        string,
        string,
      ][],
    };
    assert.deepEqual(decodeResponseHead(encodeResponseHead(head)), head);
  });

  it("round-trip an empty status text", () => {
    const head = { status: 204, statusText: "", headers: [] };
    assert.deepEqual(decodeResponseHead(encodeResponseHead(head)), head);
  });

  it("round-trip a unicode status text", () => {
    const head = { status: 418, statusText: "Je suis une théière 🫖", headers: [] };
    assert.deepEqual(decodeResponseHead(encodeResponseHead(head)), head);
  });

  for (const status of [200, 299, 300, 404, 500, 599]) {
    it(`round-trip status ${status}`, () => {
      const head = { status, statusText: "x", headers: [] };
      assert.equal(decodeResponseHead(encodeResponseHead(head)).status, status);
    });
  }

  it("round-trip many headers", () => {
    const headers: [string, string][] = [];
    for (let i = 0; i < 300; i++) headers.push([`x-${i}`, `${i}`]);
    const head = { status: 200, statusText: "OK", headers };
    assert.deepEqual(decodeResponseHead(encodeResponseHead(head)), head);
  });
});

describe("decodeRequestHead() and decodeResponseHead() reject malformed header blocks", () => {
  const decoders: [string, (bytes: Uint8Array) => unknown, string[]][] = [
    ["decodeRequestHead()", decodeRequestHead, ["GET", "/"]],
    ["decodeResponseHead()", decodeResponseHead, ["200", "OK"]],
  ];
  for (const [name, decode, start] of decoders) {
    it(`${name} rejects an empty block (truncated count)`, () => {
      assertProtocolError(() => decode(new Uint8Array(0)), /truncated length/);
    });

    it(`${name} rejects a truncated count varint`, () => {
      assertProtocolError(() => decode(new Uint8Array([0x80])), /truncated length/);
    });

    it(`${name} rejects a truncated string length varint`, () => {
      assertProtocolError(() => decode(new Uint8Array([1, 0x81, 0x81])), /truncated length/);
    });

    it(`${name} rejects an overlong varint (more than 5 bytes)`, () => {
      assertProtocolError(
        () => decode(new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x80, 0x00])),
        /length too long/,
      );
    });

    it(`${name} rejects an overlong string length varint`, () => {
      assertProtocolError(
        () => decode(new Uint8Array([1, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])),
        /length too long/,
      );
    });

    it(`${name} rejects a count larger than the bytes left`, () => {
      assertProtocolError(() => decode(new Uint8Array([5, 0, 0, 0])), /5 strings/);
    });

    it(`${name} rejects a huge count without allocating it`, () => {
      assertProtocolError(() => decode(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f, 0])));
    });

    it(`${name} rejects a string past the end`, () => {
      const bytes = block(start);
      assertProtocolError(() => decode(bytes.subarray(0, bytes.byteLength - 1)), /exceeds/);
    });

    it(`${name} rejects a string length past the end of the block`, () => {
      assertProtocolError(() => decode(new Uint8Array([2, 3, 0x47, 0x45])), /exceeds/);
    });

    it(`${name} rejects invalid UTF-8`, () => {
      const bad = new Uint8Array([0xc3, 0x28]);
      assertProtocolError(() => decode(block([...start, "x-h", bad])), /invalid UTF-8/);
    });

    it(`${name} rejects a lone surrogate encoded as UTF-8 bytes`, () => {
      const bad = new Uint8Array([0xed, 0xa0, 0x80]);
      assertProtocolError(() => decode(block([...start, bad, "v"])), /invalid UTF-8/);
    });

    it(`${name} rejects trailing bytes`, () => {
      const bytes = block(start);
      const longer = new Uint8Array(bytes.byteLength + 2);
      longer.set(bytes);
      assertProtocolError(() => decode(longer), /2 trailing bytes/);
    });

    it(`${name} rejects an odd header count (a name without a value)`, () => {
      assertProtocolError(() => decode(block([...start, "x-a", "1", "x-b"])), /without a value/);
    });

    it(`${name} rejects a block of fewer than two strings`, () => {
      assertProtocolError(() => decode(block([start[0]])));
      assertProtocolError(() => decode(block([])));
    });
  }

  for (const method of ["", "GE T", "GET\r\n", "GÉT", "(GET)", "GET/"]) {
    it(`decodeRequestHead() rejects method ${JSON.stringify(method)}`, () => {
      assertProtocolError(() => decodeRequestHead(block([method, "/"])), /invalid method/);
    });
  }

  it("decodeRequestHead() rejects an empty URL", () => {
    assertProtocolError(() => decodeRequestHead(block(["GET", ""])), /empty URL/);
  });

  for (
    const status of ["199", "600", "2a0", "", "099", "20", "2000", " 200", "200 ", "+200", "2e2"]
  ) {
    it(`decodeResponseHead() rejects status ${JSON.stringify(status)}`, () => {
      assertProtocolError(
        () => decodeResponseHead(block([status, "OK"])),
        /invalid status/,
      );
    });
  }

  it("decodeResponseHead() rejects a status that encodeResponseHead() was given out of range", () => {
    const bytes = encodeResponseHead({ status: 101, statusText: "Switching", headers: [] });
    assertProtocolError(() => decodeResponseHead(bytes), /invalid status "101"/);
  });
});

describe("RESET, WINDOW_UPDATE, PING, GOAWAY and JSON codecs", () => {
  it("encodeReset() and decodeReset() round-trip code and reason", () => {
    const bytes = encodeReset(ResetCode.Refused, "Too many streams ✋");
    assert.deepEqual(decodeReset(bytes), {
      code: ResetCode.Refused,
      reason: "Too many streams ✋",
    });
    assert.deepEqual([...bytes.subarray(0, 4)], [0, 0, 0, 2]);
  });

  it("decodeReset() reads an empty reason and a full u32 code", () => {
    assert.deepEqual(decodeReset(encodeReset(0xffff_ffff, "")), { code: 0xffff_ffff, reason: "" });
  });

  it("decodeReset() reads a payload that is a view at an offset", () => {
    const inner = encodeReset(ResetCode.Cancel, "why");
    const backing = new Uint8Array(inner.byteLength + 3);
    backing.set(inner, 3);
    assert.deepEqual(decodeReset(backing.subarray(3)), { code: ResetCode.Cancel, reason: "why" });
  });

  it("decodeReset() replaces invalid UTF-8 in the reason rather than failing", () => {
    const bytes = new Uint8Array([0, 0, 0, 1, 0xff, 0x41]);
    assert.deepEqual(decodeReset(bytes), { code: 1, reason: "\ufffdA" });
  });

  for (const increment of [1, 512, 0x7fff_ffff]) {
    it(`encodeWindowUpdate() and decodeWindowUpdate() round-trip ${increment}`, () => {
      const bytes = encodeWindowUpdate(increment);
      assert.equal(bytes.byteLength, 4);
      assert.equal(decodeWindowUpdate(bytes), increment);
    });
  }

  it("decodeWindowUpdate() reads a payload that is a view at an offset", () => {
    const backing = new Uint8Array([9, 9, 0, 0, 1, 0]);
    assert.equal(decodeWindowUpdate(backing.subarray(2)), 256);
  });

  for (const sentAt of [0, 1234.5, 1_700_000_000_000.25]) {
    it(`encodePing() and decodePing() round-trip sentAt ${sentAt} and data`, () => {
      assert.deepEqual(decodePing(encodePing(sentAt, "app-data 🙂")), {
        sentAt,
        data: "app-data 🙂",
      });
    });
  }

  it("encodePing() with empty data is exactly 8 bytes", () => {
    const bytes = encodePing(42, "");
    assert.equal(bytes.byteLength, 8);
    assert.deepEqual(decodePing(bytes), { sentAt: 42, data: "" });
  });

  it("decodePing() reads a payload that is a view at an offset", () => {
    const inner = encodePing(7, "x");
    const backing = new Uint8Array(inner.byteLength + 1);
    backing.set(inner, 1);
    assert.deepEqual(decodePing(backing.subarray(1)), { sentAt: 7, data: "x" });
  });

  it("encodeGoAway() and decodeGoAway() round-trip last id, code and reason", () => {
    const bytes = encodeGoAway(41, CloseCode.GoingAway, "Server restarting");
    assert.deepEqual(decodeGoAway(bytes), {
      lastStreamId: 41,
      code: CloseCode.GoingAway,
      reason: "Server restarting",
    });
  });

  it("decodeGoAway() reads an empty reason and the largest stream id", () => {
    assert.deepEqual(decodeGoAway(encodeGoAway(0xffff_ffff, 1000, "")), {
      lastStreamId: 0xffff_ffff,
      code: 1000,
      reason: "",
    });
  });

  const values: unknown[] = [null, 0, "text ✓", [1, "two", { three: 3 }], {
    nested: { a: [true, false, null] },
  }];
  for (const value of values) {
    it(`encodeJson() and decodeJson() round-trip ${JSON.stringify(value)}`, () => {
      assert.deepEqual(decodeJson(encodeJson(value), "test"), value);
    });
  }

  it("decodeJson() rejects text that is not JSON", () => {
    assertProtocolError(() => decodeJson(utf8.encode("{nope"), "hello"), /Cannot decode hello/);
  });

  it("decodeJson() rejects an empty payload", () => {
    assertProtocolError(() => decodeJson(new Uint8Array(0), "welcome"), /not UTF-8 JSON/);
  });

  it("decodeJson() rejects invalid UTF-8 inside a JSON string", () => {
    const bytes = new Uint8Array([0x22, 0xff, 0x22]);
    assertProtocolError(() => decodeJson(bytes, "hello"), /not UTF-8 JSON/);
  });
});
