import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CloseCode,
  decodeHello,
  decodeWelcome,
  DEFAULT_SETTINGS,
  encodeHello,
  encodeJson,
  encodeWelcome,
  fitCloseReason,
  HANDSHAKE_TRANSITIONS,
  type HandshakeEvent,
  type HandshakeState,
  MAX_CLOSE_REASON_BYTES,
  MIN_FRAME_BYTES,
  nextHandshakeState,
  parseSettings,
  PROTOCOL_VERSION,
  ProtocolError,
  type Settings,
  TERMINAL_CLOSE_CODES,
} from "../protocol/mod.ts";

const STATES: HandshakeState[] = [
  "start",
  "hello_sent",
  "hello_received",
  "welcome_sent",
  "welcome_received",
  "open",
];
const EVENTS: HandshakeEvent[] = [
  "send_hello",
  "recv_hello",
  "send_welcome",
  "recv_welcome",
  "send_ack",
  "recv_ack",
];

/** The legal transitions, written out independently of the table under test. */
const LEGAL: Record<string, HandshakeState> = {
  "start/send_hello": "hello_sent",
  "start/recv_hello": "hello_received",
  "hello_sent/recv_welcome": "welcome_received",
  "hello_received/send_welcome": "welcome_sent",
  "welcome_received/send_ack": "open",
  "welcome_sent/recv_ack": "open",
};

const utf8 = new TextEncoder();

function assertProtocolError(fn: () => unknown, code: number, message?: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected ProtocolError, got ${error}`);
    assert.equal(error.code, code);
    if (message) assert.match(error.message, message);
    return true;
  });
}

function helloBytes(fields: Record<string, unknown>): Uint8Array {
  return encodeJson({
    version: PROTOCOL_VERSION,
    metadata: null,
    settings: { ...DEFAULT_SETTINGS },
    ...fields,
  });
}

function welcomeBytes(fields: Record<string, unknown>): Uint8Array {
  return encodeJson({
    id: "01J0000000000000000000000",
    settings: { ...DEFAULT_SETTINGS },
    ...fields,
  });
}

describe("HANDSHAKE_TRANSITIONS and nextHandshakeState()", () => {
  it("lists exactly the six states", () => {
    assert.deepEqual(Object.keys(HANDSHAKE_TRANSITIONS).sort(), [...STATES].sort());
  });

  for (const state of STATES) {
    for (const event of EVENTS) {
      const expected = LEGAL[`${state}/${event}`];
      it(`nextHandshakeState(${state}, ${event}) is ${expected ?? "illegal (undefined)"}`, () => {
        assert.equal(nextHandshakeState(state, event), expected);
        assert.equal(HANDSHAKE_TRANSITIONS[state][event], expected);
      });
    }
  }

  it("walks the client path start → hello_sent → welcome_received → open", () => {
    let state: HandshakeState = "start";
    for (const event of ["send_hello", "recv_welcome", "send_ack"] as HandshakeEvent[]) {
      state = nextHandshakeState(state, event)!;
    }
    assert.equal(state, "open");
  });

  it("walks the server path start → hello_received → welcome_sent → open", () => {
    let state: HandshakeState = "start";
    for (const event of ["recv_hello", "send_welcome", "recv_ack"] as HandshakeEvent[]) {
      state = nextHandshakeState(state, event)!;
    }
    assert.equal(state, "open");
  });

  it("leaves open as a dead end", () => {
    for (const event of EVENTS) assert.equal(nextHandshakeState("open", event), undefined);
  });
});

describe("encodeHello() and decodeHello()", () => {
  it("round-trip version, metadata, settings and resume", () => {
    const settings: Settings = {
      maxFrameBytes: MIN_FRAME_BYTES,
      maxHeaderBytes: 1024,
      maxConcurrentStreams: 1,
      initialWindow: 1024,
      connectionWindow: 1024,
      maxMessageBytes: MIN_FRAME_BYTES + 10,
    };
    const hello = {
      version: PROTOCOL_VERSION,
      metadata: { name: "agent-1", tags: ["a", "ü"] },
      settings,
      resume: "token-1",
    };
    const { metadataBytes, metadataValues, ...decoded } = decodeHello(encodeHello(hello), 1024);
    assert.deepEqual(decoded, hello);
    assert.equal(metadataBytes, JSON.stringify(hello.metadata).length + 1, "ü is two bytes");
    assert.ok(metadataValues >= 5, `${metadataValues} values`);
  });

  it("keeps noDelay only when it is true", () => {
    assert.equal(decodeHello(helloBytes({ noDelay: true }), 1024).noDelay, true);
    for (const noDelay of [false, "true", 1, null]) {
      assert.equal("noDelay" in decodeHello(helloBytes({ noDelay }), 1024), false, `${noDelay}`);
    }
    const hello = { version: PROTOCOL_VERSION, metadata: null, settings: DEFAULT_SETTINGS };
    assert.equal("noDelay" in JSON.parse(new TextDecoder().decode(encodeHello(hello))), false);
  });

  it("omits resume when the hello has none", () => {
    const hello = decodeHello(helloBytes({}), 1024);
    assert.equal("resume" in hello, false);
    assert.equal(hello.metadata, null);
  });

  it("turns missing metadata into null", () => {
    const bytes = encodeJson({ version: PROTOCOL_VERSION, settings: DEFAULT_SETTINGS });
    assert.equal(decodeHello(bytes, 1024).metadata, null);
  });

  for (const version of [0, 1, PROTOCOL_VERSION + 1, "2", null, undefined]) {
    it(`rejects version ${JSON.stringify(version)} with CloseCode.UnsupportedVersion`, () => {
      assertProtocolError(
        () => decodeHello(helloBytes({ version }), 1024),
        CloseCode.UnsupportedVersion,
        /Unsupported protocol version/,
      );
    });
  }

  it("checks the version before the metadata and settings", () => {
    assertProtocolError(
      () => decodeHello(helloBytes({ version: 9, metadata: "x".repeat(100), settings: 1 }), 10),
      CloseCode.UnsupportedVersion,
    );
  });

  it("accepts metadata of exactly maxMetadataBytes, measured as compact JSON", () => {
    const metadata = { k: "é".repeat(10) };
    const size = utf8.encode(JSON.stringify(metadata)).byteLength;
    assert.deepEqual(decodeHello(helloBytes({ metadata }), size).metadata, metadata);
  });

  it("rejects metadata one byte over the limit with CloseCode.InvalidMetadata", () => {
    const metadata = { k: "é".repeat(10) };
    const size = utf8.encode(JSON.stringify(metadata)).byteLength;
    assertProtocolError(
      () => decodeHello(helloBytes({ metadata }), size - 1),
      CloseCode.InvalidMetadata,
      /exceeds limit/,
    );
  });

  it("measures metadata as its value, not the sender's whitespace", () => {
    const text = `{"version":${PROTOCOL_VERSION},"metadata":{   "a"  :   1   },"settings":${
      JSON.stringify(DEFAULT_SETTINGS)
    }}`;
    assert.deepEqual(decodeHello(utf8.encode(text), 7).metadata, { a: 1 });
  });

  it("rejects deeply nested metadata with a ProtocolError, not a stack overflow", () => {
    const depth = 400_000;
    const text = `{"version":${PROTOCOL_VERSION},"settings":${
      JSON.stringify(DEFAULT_SETTINGS)
    },"metadata":${"[".repeat(depth)}${"]".repeat(depth)}}`;
    assertProtocolError(() => decodeHello(utf8.encode(text), 16 * 1024), CloseCode.InvalidMetadata);
  });

  for (
    const [label, bytes] of [
      ["not JSON", utf8.encode("{nope")],
      ["an array", encodeJson([1])],
      ["null", encodeJson(null)],
      ["a number", encodeJson(1)],
    ] as [string, Uint8Array][]
  ) {
    it(`rejects a payload that is ${label} with CloseCode.ProtocolError`, () => {
      assertProtocolError(() => decodeHello(bytes, 1024), CloseCode.ProtocolError);
    });
  }

  for (const resume of [1, "", "x".repeat(513), null]) {
    const ok = resume === "";
    it(`${ok ? "accepts" : "rejects"} resume ${JSON.stringify(resume).slice(0, 12)}`, () => {
      const bytes = helloBytes({ resume });
      if (ok) assert.equal(decodeHello(bytes, 1024).resume, resume);
      else assertProtocolError(() => decodeHello(bytes, 1024), CloseCode.ProtocolError, /resume/);
    });
  }

  it("accepts a resume token of 512 characters", () => {
    const resume = "r".repeat(512);
    assert.equal(decodeHello(helloBytes({ resume }), 1024).resume, resume);
  });

  it("rejects missing settings with CloseCode.ProtocolError", () => {
    const bytes = encodeJson({ version: PROTOCOL_VERSION, metadata: null });
    assertProtocolError(() => decodeHello(bytes, 1024), CloseCode.ProtocolError, /settings/);
  });

  it("rejects bad settings with CloseCode.ProtocolError", () => {
    const settings = { ...DEFAULT_SETTINGS, initialWindow: -1 };
    assertProtocolError(
      () => decodeHello(helloBytes({ settings }), 1024),
      CloseCode.ProtocolError,
      /Invalid hello: settings\.initialWindow/,
    );
  });
});

describe("parseSettings()", () => {
  const minimum: Settings = {
    maxFrameBytes: MIN_FRAME_BYTES,
    maxHeaderBytes: 1024,
    maxConcurrentStreams: 1,
    initialWindow: 1024,
    connectionWindow: 1024,
    maxMessageBytes: MIN_FRAME_BYTES + 10,
  };

  it("accepts the defaults", () => {
    assert.deepEqual(parseSettings({ ...DEFAULT_SETTINGS }, "hello"), DEFAULT_SETTINGS);
  });

  it("accepts every field at its minimum and at 2^31 − 1", () => {
    assert.deepEqual(parseSettings({ ...minimum }, "hello"), minimum);
    const max = {
      maxFrameBytes: 0x7fff_ffff - 10,
      maxHeaderBytes: 0x7fff_ffff,
      maxConcurrentStreams: 0x7fff_ffff,
      initialWindow: 0x7fff_ffff,
      connectionWindow: 0x7fff_ffff,
      maxMessageBytes: 0x7fff_ffff,
    };
    assert.deepEqual(parseSettings(max, "hello"), max);
  });

  it("rejects a maxMessageBytes that cannot hold the largest frame", () => {
    assertProtocolError(
      () =>
        parseSettings(
          { ...DEFAULT_SETTINGS, maxFrameBytes: 65536, maxMessageBytes: 65545 },
          "hello",
        ),
      CloseCode.ProtocolError,
      /settings\.maxMessageBytes must be at least maxFrameBytes \+ 10/,
    );
  });

  it("drops unknown fields", () => {
    assert.deepEqual(parseSettings({ ...minimum, extra: 1 }, "hello"), minimum);
  });

  for (const value of [null, undefined, 1, "settings"]) {
    it(`rejects ${JSON.stringify(value)} as settings`, () => {
      assertProtocolError(
        () => parseSettings(value, "welcome"),
        CloseCode.ProtocolError,
        /Invalid welcome: settings missing/,
      );
    });
  }

  for (const name of Object.keys(minimum) as (keyof Settings)[]) {
    for (const bad of [undefined, "1024", 1024.5, minimum[name] - 1, 0x8000_0000, -1, null]) {
      it(`rejects settings.${name} = ${JSON.stringify(bad)}`, () => {
        const value: Record<string, unknown> = { ...DEFAULT_SETTINGS, [name]: bad };
        if (bad === undefined) delete value[name];
        assertProtocolError(
          () => parseSettings(value, "hello"),
          CloseCode.ProtocolError,
          new RegExp(`settings\\.${name}`),
        );
      });
    }
  }
});

describe("encodeWelcome() and decodeWelcome()", () => {
  it("round-trip id, settings, heartbeat, resumeToken and resumed", () => {
    const welcome = {
      id: "01J0000000000000000000000",
      settings: { ...DEFAULT_SETTINGS, initialWindow: 4096 },
      heartbeat: { interval: 1000, timeout: 3000 },
      resumeToken: "tok",
      resumed: true,
    };
    assert.deepEqual(decodeWelcome(encodeWelcome(welcome)), welcome);
  });

  it("keeps only id and settings when nothing else is given", () => {
    const welcome = { id: "abc", settings: { ...DEFAULT_SETTINGS } };
    assert.deepEqual(decodeWelcome(encodeWelcome(welcome)), welcome);
  });

  it("ignores resumed: false and a non-string resumeToken", () => {
    const welcome = decodeWelcome(welcomeBytes({ resumed: false, resumeToken: 5 }));
    assert.equal("resumed" in welcome, false);
    assert.equal("resumeToken" in welcome, false);
  });

  for (const id of [undefined, "", 5, "x".repeat(129), null]) {
    it(`rejects id ${JSON.stringify(id)?.slice(0, 12)}`, () => {
      assertProtocolError(
        () => decodeWelcome(welcomeBytes({ id })),
        CloseCode.ProtocolError,
        /id must be a non-empty string/,
      );
    });
  }

  it("accepts an id of 128 characters", () => {
    const id = "i".repeat(128);
    assert.equal(decodeWelcome(welcomeBytes({ id })).id, id);
  });

  for (const heartbeat of [null, 5, { interval: 1 }, { interval: "1", timeout: 2 }]) {
    it(`rejects heartbeat ${JSON.stringify(heartbeat)}`, () => {
      assertProtocolError(
        () => decodeWelcome(welcomeBytes({ heartbeat })),
        CloseCode.ProtocolError,
        /heartbeat/,
      );
    });
  }

  it("rejects bad settings", () => {
    assertProtocolError(
      () => decodeWelcome(welcomeBytes({ settings: { ...DEFAULT_SETTINGS, maxFrameBytes: 10 } })),
      CloseCode.ProtocolError,
      /Invalid welcome: settings\.maxFrameBytes/,
    );
  });

  for (
    const [label, bytes] of [
      ["not JSON", utf8.encode("]")],
      ["an array", encodeJson([])],
      ["null", encodeJson(null)],
      ["invalid UTF-8", new Uint8Array([0x7b, 0xff, 0x7d])],
    ] as [string, Uint8Array][]
  ) {
    it(`rejects a payload that is ${label}`, () => {
      assertProtocolError(() => decodeWelcome(bytes), CloseCode.ProtocolError);
    });
  }
});

describe("fitCloseReason()", () => {
  const size = (s: string) => utf8.encode(s).byteLength;

  it("keeps a short reason unchanged", () => {
    assert.equal(fitCloseReason("short"), "short");
    assert.equal(fitCloseReason(""), "");
  });

  it("keeps a reason of exactly 123 bytes", () => {
    const reason = "a".repeat(MAX_CLOSE_REASON_BYTES);
    assert.equal(MAX_CLOSE_REASON_BYTES, 123);
    assert.equal(fitCloseReason(reason), reason);
  });

  it("cuts a reason of 124 ASCII bytes to 123", () => {
    assert.equal(fitCloseReason("a".repeat(124)), "a".repeat(123));
  });

  it("keeps exactly 123 bytes made of multi-byte characters", () => {
    const reason = "é".repeat(61) + "a"; // 122 + 1 bytes
    assert.equal(size(reason), 123);
    assert.equal(fitCloseReason(reason), reason);
  });

  it("does not split a two-byte character at the limit", () => {
    const reason = "a" + "é".repeat(100); // the 62nd é would end at byte 125
    const fitted = fitCloseReason(reason);
    assert.equal(fitted, "a" + "é".repeat(61));
    assert.equal(size(fitted), 123);
  });

  it("does not split a three-byte character", () => {
    const fitted = fitCloseReason("€".repeat(50)); // 150 bytes
    assert.equal(fitted, "€".repeat(41));
    assert.equal(size(fitted), 123);
  });

  it("does not split a four-byte character (a surrogate pair)", () => {
    const fitted = fitCloseReason("🙂".repeat(40)); // 160 bytes
    assert.equal(fitted, "🙂".repeat(30));
    assert.equal(size(fitted), 120);
  });

  it("leaves room unused rather than cut a character", () => {
    const fitted = fitCloseReason("a".repeat(121) + "🙂🙂");
    assert.equal(fitted, "a".repeat(121));
  });

  it("always returns at most 123 UTF-8 bytes that are a prefix of the reason", () => {
    const chars = ["a", "é", "€", "🙂"];
    for (let n = 0; n < 200; n++) {
      let reason = "";
      for (let i = 0; i < n; i++) reason += chars[(i * 7 + n) % chars.length];
      const fitted = fitCloseReason(reason);
      assert.ok(size(fitted) <= MAX_CLOSE_REASON_BYTES);
      assert.ok(reason.startsWith(fitted));
      assert.ok(size(reason) <= 123 ? fitted === reason : size(fitted) > 123 - 4);
    }
  });
});

describe("TERMINAL_CLOSE_CODES", () => {
  it("holds the refusals a client must not retry on its own", () => {
    assert.deepEqual(
      [...TERMINAL_CLOSE_CODES].sort(),
      [
        CloseCode.UnsupportedVersion,
        CloseCode.Unauthorized,
        CloseCode.InvalidMetadata,
        CloseCode.OriginNotAllowed,
        CloseCode.Superseded,
      ].sort(),
    );
    assert.equal(TERMINAL_CLOSE_CODES.has(CloseCode.HeartbeatTimeout), false);
    assert.equal(TERMINAL_CLOSE_CODES.has(CloseCode.GoingAway), false);
    // The holder of a name may be a half-open connection about to time out: retry.
    assert.equal(TERMINAL_CLOSE_CODES.has(CloseCode.NameInUse), false);
  });

  it("uses only application close codes 4000–4999 besides Normal", () => {
    for (const [name, code] of Object.entries(CloseCode)) {
      if (name === "Normal") assert.equal(code, 1000);
      else assert.ok(code >= 4000 && code <= 4999, `${name} = ${code}`);
    }
  });
});
