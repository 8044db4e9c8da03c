import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CloseCode,
  decodeGoAway,
  decodePing,
  decodeReset,
  decodeWindowUpdate,
  DEFAULT_SETTINGS,
  encodeFrames,
  encodeHello,
  encodeJson,
  encodePing,
  encodeRequestHead,
  encodeReset,
  encodeResponseHead,
  encodeWindowUpdate,
  FLAG_END_STREAM,
  type Frame,
  FRAME_HEADER_BYTES,
  FrameType,
  HELLO_OVERHEAD_BYTES,
  MAX_WELCOME_BYTES,
  MIN_FRAME_BYTES,
  OUTBOX_HIGH_WATER,
  PROTOCOL_VERSION,
  ProtocolError,
  type RequestHead,
  ResetCode,
  type ResponseHead,
  Session,
  type SessionEvent,
  SMALL_DATA_BYTES,
} from "../protocol/mod.ts";
import { concatBytes } from "./_raw_frames.ts";
import { GET, type PairOptions, type Sent, SessionPair, TEST_ID } from "./_session_pair.ts";

const OK: ResponseHead = { status: 200, statusText: "OK", headers: [] };
const POST: RequestHead = {
  method: "POST",
  url: "/pets",
  headers: [["content-type", "text/plain"]],
};
const HEARTBEAT = { interval: 1000, timeout: 3000, jitter: 0 };
const utf8 = new TextEncoder();
const text = new TextDecoder();

type EventOf<T extends SessionEvent["type"]> = Extract<SessionEvent, { type: T }>;

function opened(options: PairOptions = {}): SessionPair {
  const pair = new SessionPair(options);
  pair.handshake();
  return pair;
}

function ofType<T extends SessionEvent["type"]>(events: SessionEvent[], type: T): EventOf<T>[] {
  return events.filter((e): e is EventOf<T> => e.type === type);
}

function types(events: SessionEvent[]): string[] {
  return events.map((e) => e.type);
}

/** A hello event without its metadata cost (an estimate, tested where it matters). */
function withoutCost(event: SessionEvent): SessionEvent | Record<string, unknown> {
  if (event.type !== "hello") return event;
  const { metadataCost, ...rest } = event;
  assert.ok(metadataCost > 0, "a hello event says what its metadata costs");
  return rest;
}

function closeOf(events: SessionEvent[]): EventOf<"close"> {
  const closes = ofType(events, "close");
  assert.equal(closes.length, 1, `expected one close event in ${types(events)}`);
  return closes[0];
}

function assertClosedBy(events: SessionEvent[], code: number, message?: RegExp): void {
  const close = closeOf(events);
  assert.equal(close.code, code);
  assert.ok(close.error instanceof ProtocolError, "close carries a ProtocolError");
  assert.equal(close.error.code, code);
  if (message) assert.match(close.error.message, message);
}

function bytes(length: number, seed = 0): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i + seed) & 0xff;
  return out;
}

function frame(type: FrameType, streamId: number, payload: Uint8Array, flags = 0): Frame {
  return { type, flags, streamId, payload };
}

function requestFrame(streamId: number, head: RequestHead = GET, end = true): Frame {
  return frame(FrameType.Headers, streamId, encodeRequestHead(head), end ? FLAG_END_STREAM : 0);
}

function framesOf(sent: Sent | undefined, type?: FrameType): Frame[] {
  if (!sent) return [];
  return type === undefined ? sent.frames : sent.frames.filter((f) => f.type === type);
}

function dataBytes(frames: Frame[], streamId?: number): number {
  return frames
    .filter((f) => f.type === FrameType.Data && (streamId === undefined || f.streamId === streamId))
    .reduce((n, f) => n + f.payload.byteLength, 0);
}

/** Opens a stream from the client and carries the request to the server. */
function request(pair: SessionPair, head: RequestHead = GET, end = true): number {
  const id = pair.client.openStream(head, end);
  pair.step("client");
  const [req] = ofType(pair.events("server"), "request");
  assert.equal(req.streamId, id);
  return id;
}

describe("Session handshake", () => {
  it("Session.hello(), accept() and the ACK open both ends with the same id", () => {
    const pair = new SessionPair();
    assert.equal(pair.client.phase, "handshake");
    assert.equal(pair.server.phase, "handshake");
    const { client, server } = pair.handshake({ name: "agent-1", tags: ["a"] }, TEST_ID);
    assert.deepEqual(withoutCost(server[0]), {
      type: "hello",
      metadata: { name: "agent-1", tags: ["a"] },
    });
    assert.deepEqual(types(server), ["hello", "open"]);
    assert.deepEqual(server[1], { type: "open", id: TEST_ID });
    assert.deepEqual(types(client), ["open"]);
    const open = client[0] as EventOf<"open">;
    assert.equal(open.id, TEST_ID);
    assert.equal(open.welcome?.id, TEST_ID);
    assert.equal(pair.client.id, TEST_ID);
    assert.equal(pair.server.id, TEST_ID);
    assert.equal(pair.client.phase, "open");
    assert.equal(pair.server.phase, "open");
  });

  it("Session handshake costs one message each: HELLO, WELCOME, ACK, and a nudge answers the ACK", () => {
    const pair = new SessionPair();
    pair.handshake();
    assert.deepEqual(
      pair.log.map((s) => [s.from, s.frames.map((f) => f.type)]),
      [
        ["client", [FrameType.Hello]],
        ["server", [FrameType.Welcome]],
        ["client", [FrameType.Ack]],
        ["server", [FrameType.Noop]],
      ],
    );
  });

  it("Session server answers the ACK with the first response instead of a NOOP", () => {
    const pair = new SessionPair();
    pair.client.hello({});
    pair.step("client");
    pair.server.accept({ id: TEST_ID });
    pair.step("server");
    const id = pair.client.openStream(GET, true);
    const ackAndRequest = pair.step("client")!;
    assert.deepEqual(ackAndRequest.frames.map((f) => f.type), [FrameType.Ack, FrameType.Headers]);
    pair.server.sendHeaders(id, OK, true);
    pair.tick();
    assert.deepEqual(pair.step("server")!.frames.map((f) => f.type), [FrameType.Headers]);
  });

  it("Session: servers whose clients send the same settings keep one frozen copy of them", () => {
    const same = { initialWindow: 8192 };
    const one = new SessionPair({ client: { settings: same } });
    const two = new SessionPair({ client: { settings: { ...same } } });
    const other = new SessionPair({ client: { settings: { initialWindow: 16384 } } });
    const { client } = one.handshake();
    two.handshake();
    assert.equal(two.server.peerSettings, one.server.peerSettings);
    assert.equal(Object.isFrozen(one.server.peerSettings), true);
    // What the open event handed over is the peer's own object, not the shared one.
    const welcome = (client[0] as EventOf<"open">).welcome!.settings;
    assert.equal(Object.isFrozen(welcome), false);
    other.handshake();
    assert.notEqual(other.server.peerSettings, one.server.peerSettings);
    assert.deepEqual(other.server.peerSettings, { ...DEFAULT_SETTINGS, initialWindow: 16384 });
    assert.deepEqual(one.server.peerSettings, { ...DEFAULT_SETTINGS, ...same });
  });

  it("Session handshake exchanges settings: each end learns peerSettings", () => {
    const clientSettings = { initialWindow: 4096, maxHeaderBytes: 2048 };
    const serverSettings = { maxConcurrentStreams: 7, maxFrameBytes: MIN_FRAME_BYTES };
    const pair = new SessionPair({
      client: { settings: clientSettings },
      server: { settings: serverSettings },
    });
    assert.deepEqual(pair.client.peerSettings, DEFAULT_SETTINGS);
    const { client } = pair.handshake();
    assert.deepEqual(pair.server.peerSettings, { ...DEFAULT_SETTINGS, ...clientSettings });
    assert.deepEqual(pair.client.peerSettings, { ...DEFAULT_SETTINGS, ...serverSettings });
    assert.deepEqual(pair.client.localSettings, { ...DEFAULT_SETTINGS, ...clientSettings });
    assert.deepEqual(
      (client[0] as EventOf<"open">).welcome?.settings,
      { ...DEFAULT_SETTINGS, ...serverSettings },
    );
  });

  it("Session.accept() sends the server heartbeat and resume details in WELCOME", () => {
    const pair = new SessionPair({ server: { heartbeat: { interval: 5000, timeout: 15000 } } });
    pair.client.hello(null, "resume-token-0");
    pair.step("client");
    assert.deepEqual(pair.events("server").map(withoutCost), [
      { type: "hello", metadata: null, resume: "resume-token-0" },
    ]);
    pair.server.accept({ id: "abc", resumeToken: "resume-token-1", resumed: true });
    pair.flush();
    const [open] = pair.events("client") as EventOf<"open">[];
    assert.deepEqual(open.welcome, {
      id: "abc",
      settings: DEFAULT_SETTINGS,
      heartbeat: { interval: 5000, timeout: 15000 },
      resumeToken: "resume-token-1",
      resumed: true,
    });
  });

  it("Session.hello() sends undefined metadata as null", () => {
    const pair = new SessionPair();
    pair.client.hello(undefined);
    pair.step("client");
    assert.deepEqual(pair.events("server").map(withoutCost), [{ type: "hello", metadata: null }]);
  });

  it("Session.pollTimeout() is the handshake deadline until open", () => {
    const pair = new SessionPair({ now: 100, client: { handshakeTimeout: 500 } });
    assert.equal(pair.client.pollTimeout(), 600);
    assert.equal(pair.server.pollTimeout(), 100 + 10_000);
    pair.client.hello({});
    pair.step("client");
    pair.server.accept({ id: TEST_ID });
    pair.flush();
    assert.equal(pair.client.pollTimeout(), undefined);
    assert.equal(pair.server.pollTimeout(), pair.now, "the server's nudge for the ACK");
    pair.tick();
    pair.flush();
    assert.equal(pair.server.pollTimeout(), undefined);
  });

  it("Session.handleTimeout() closes the client with HandshakeTimeout when no WELCOME comes", () => {
    const pair = new SessionPair({ client: { handshakeTimeout: 1000 } });
    pair.client.hello({});
    pair.take("client"); // lost
    pair.client.handleTimeout(999);
    assert.deepEqual(pair.events("client"), []);
    assert.equal(pair.advance("client"), 1000);
    const close = closeOf(pair.events("client"));
    assert.equal(close.code, CloseCode.HandshakeTimeout);
    assert.equal(close.error, undefined);
    assert.equal(pair.client.phase, "closed");
    assert.equal(pair.client.pollTimeout(), undefined);
    assert.equal(pair.client.pollTransmit(), undefined);
  });

  it("Session.handleTimeout() closes the server with HandshakeTimeout when no ACK comes", () => {
    const pair = new SessionPair({ server: { handshakeTimeout: 2000 } });
    pair.client.hello({});
    pair.step("client");
    pair.server.accept({ id: TEST_ID });
    pair.step("server"); // the client opens; its ACK is lost
    pair.take("client");
    assert.equal(pair.client.phase, "open");
    assert.equal(pair.advance("server"), 2000);
    assert.equal(closeOf(pair.events("server")).code, CloseCode.HandshakeTimeout);
    assert.equal(pair.server.phase, "closed");
  });

  it("Session.handleTimeout() closes a server that never hears HELLO", () => {
    const pair = new SessionPair({ server: { handshakeTimeout: 50 } });
    pair.advance("server");
    assert.equal(closeOf(pair.events("server")).code, CloseCode.HandshakeTimeout);
  });

  it("Session.refuse() closes the server with the given code and no error", () => {
    const pair = new SessionPair();
    pair.client.hello({ token: "bad" });
    pair.step("client");
    pair.events("server");
    pair.server.refuse(CloseCode.Unauthorized, "Not allowed");
    assert.deepEqual(pair.events("server"), [
      { type: "close", code: CloseCode.Unauthorized, reason: "Not allowed" },
    ]);
    assert.equal(pair.server.phase, "closed");
    assert.equal(pair.server.pollTransmit(), undefined);
    assert.equal(pair.server.pollTimeout(), undefined);
  });

  it("Session closes with UnsupportedVersion on a HELLO of another version", () => {
    const pair = new SessionPair();
    const hello = encodeJson({ version: 1, metadata: null, settings: DEFAULT_SETTINGS });
    pair.inject("server", [frame(FrameType.Hello, 0, hello)]);
    assertClosedBy(
      pair.events("server"),
      CloseCode.UnsupportedVersion,
      /Unsupported protocol version: 1, server speaks 2/,
    );
  });

  it("Session closes with InvalidMetadata when metadata exceeds maxMetadataBytes", () => {
    const pair = new SessionPair({ server: { maxMetadataBytes: 16 } });
    pair.client.hello({ name: "a-rather-long-agent-name" });
    pair.step("client");
    assertClosedBy(pair.events("server"), CloseCode.InvalidMetadata, /exceeds limit 16/);
  });

  it("Session accepts metadata of exactly maxMetadataBytes", () => {
    const metadata = { n: "abc" };
    const pair = new SessionPair({
      server: { maxMetadataBytes: utf8.encode(JSON.stringify(metadata)).byteLength },
    });
    pair.client.hello(metadata);
    pair.step("client");
    assert.deepEqual(pair.events("server").map(withoutCost), [{ type: "hello", metadata }]);
  });

  it("Session closes with ProtocolError on a HELLO with bad settings", () => {
    const pair = new SessionPair();
    const hello = encodeHello({
      version: PROTOCOL_VERSION,
      metadata: null,
      settings: { ...DEFAULT_SETTINGS, initialWindow: 0 },
    });
    pair.inject("server", [frame(FrameType.Hello, 0, hello)]);
    assertClosedBy(pair.events("server"), CloseCode.ProtocolError, /initialWindow/);
  });

  it("Session closes the client with ProtocolError on a malformed WELCOME", () => {
    const pair = new SessionPair();
    pair.client.hello({});
    pair.take("client");
    pair.inject("client", [frame(FrameType.Welcome, 0, encodeJson({ id: "" }))]);
    assertClosedBy(pair.events("client"), CloseCode.ProtocolError, /Invalid welcome/);
  });

  const outOfOrder: [string, "client" | "server", (pair: SessionPair) => void, Frame[]][] = [
    ["WELCOME before HELLO", "client", () => {}, [
      frame(FrameType.Welcome, 0, encodeJson({ id: "x", settings: DEFAULT_SETTINGS })),
    ]],
    ["ACK before HELLO", "server", () => {}, [frame(FrameType.Ack, 0, new Uint8Array(0))]],
    ["ACK before WELCOME", "server", (pair) => {
      pair.client.hello({});
      pair.step("client");
    }, [frame(FrameType.Ack, 0, new Uint8Array(0))]],
    ["a second HELLO", "server", (pair) => {
      pair.client.hello({});
      pair.step("client");
    }, [
      frame(
        FrameType.Hello,
        0,
        encodeHello({ version: 1, metadata: 1, settings: DEFAULT_SETTINGS }),
      ),
    ]],
    ["HELLO sent to a client", "client", () => {}, [
      frame(
        FrameType.Hello,
        0,
        encodeHello({ version: 1, metadata: 1, settings: DEFAULT_SETTINGS }),
      ),
    ]],
    ["WELCOME sent to a server", "server", () => {}, [
      frame(FrameType.Welcome, 0, encodeJson({ id: "x", settings: DEFAULT_SETTINGS })),
    ]],
    ["HEADERS before the handshake completed", "server", () => {}, [requestFrame(1)]],
    ["PING before the handshake completed", "client", () => {}, [
      frame(FrameType.Ping, 0, encodePing(0, "")),
    ]],
  ];
  for (const [label, to, setup, frames] of outOfOrder) {
    it(`Session closes with ProtocolError on ${label}`, () => {
      const pair = new SessionPair();
      setup(pair);
      pair.events(to);
      pair.inject(to, frames);
      assertClosedBy(pair.events(to), CloseCode.ProtocolError);
      assert.equal(pair.end(to).phase, "closed");
    });
  }

  it("Session closes with ProtocolError on a HELLO or ACK after open", () => {
    for (const late of [FrameType.Hello, FrameType.Ack]) {
      const pair = opened();
      const payload = late === FrameType.Hello
        ? encodeHello({ version: 1, metadata: null, settings: DEFAULT_SETTINGS })
        : new Uint8Array(0);
      pair.inject("server", [frame(late, 0, payload)]);
      assertClosedBy(pair.events("server"), CloseCode.ProtocolError, /Unexpected/);
    }
  });

  it("Session closes the client with ProtocolError on a second WELCOME", () => {
    const pair = opened();
    pair.inject("client", [
      frame(FrameType.Welcome, 0, encodeJson({ id: "y", settings: DEFAULT_SETTINGS })),
    ]);
    assertClosedBy(pair.events("client"), CloseCode.ProtocolError);
  });

  it("Session.close() event reason fits 123 UTF-8 bytes even for a peer-chosen version", () => {
    const pair = new SessionPair();
    const hello = encodeJson({ version: "ü".repeat(500), metadata: null, settings: {} });
    pair.inject("server", [frame(FrameType.Hello, 0, hello)]);
    const close = closeOf(pair.events("server"));
    assert.equal(close.code, CloseCode.UnsupportedVersion);
    assert.ok(utf8.encode(close.reason).byteLength <= 123, `${close.reason.length}`);
    assert.ok(close.error!.message.length > 500, "the error keeps the whole message");
  });
});

describe("Session exchanges", () => {
  it("Session.openStream() on the client uses odd ids and one message carries them all", () => {
    const pair = opened();
    const heads: RequestHead[] = [
      GET,
      { method: "DELETE", url: "/pets/1", headers: [["x-a", "1"]] },
      { method: "PUT", url: "/ünï", headers: [] },
    ];
    const ids = heads.map((head) => pair.client.openStream(head, true));
    assert.deepEqual(ids, [1, 3, 5]);
    assert.equal(pair.client.localStreamCount, 3);
    const sent = pair.step("client")!;
    assert.equal(sent.frames.length, 3);
    assert.deepEqual(
      pair.events("server"),
      ids.map((streamId, i) => ({ type: "request", streamId, head: heads[i], end: true })),
    );
    assert.equal(pair.server.peerStreamCount, 3);
  });

  it("Session.readyFrames counts queued control frames and streams with bytes to send", () => {
    const pair = opened();
    assert.equal(pair.client.readyFrames, 0);
    for (let i = 0; i < 3; i++) {
      const id = pair.client.openStream({ method: "POST", url: "/x", headers: [] }, false);
      pair.client.sendData(id, new Uint8Array(10), true);
    }
    pair.client.openStream(GET, true);
    assert.equal(pair.client.readyFrames, 4 + 3, "four HEADERS, three bodies");
    const sent = pair.take("client")!;
    assert.equal(sent.frames.length, 7);
    assert.equal(pair.client.readyFrames, 0);
  });

  it("Session.peekEvent() shows waiting events in order without taking them", () => {
    const pair = opened();
    const id = pair.client.openStream({ method: "POST", url: "/echo", headers: [] }, false);
    pair.client.sendData(id, new Uint8Array([1, 2]), false);
    pair.client.sendData(id, new Uint8Array([3]), true);
    const sent = pair.take("client")!;
    pair.server.handleMessage(sent.bytes, pair.now);
    const first = pair.server.peekEvent();
    assert.equal(first?.type, "request");
    assert.equal(pair.server.peekEvent(0), first, "index 0 is the next event");
    // The body's two chunks left as one frame, and arrive as one chunk.
    const data = pair.server.peekEvent(1);
    assert.deepEqual(
      data?.type === "data" && [data.streamId, [...data.chunk], data.end],
      [id, [1, 2, 3], true],
    );
    assert.equal(pair.server.peekEvent(2), undefined);
    assert.equal(pair.server.pollEvent(), first, "peeking took nothing");
    assert.equal(pair.server.pollEvent(), data);
    assert.equal(pair.server.peekEvent(), undefined);
  });

  it("Session.sendHeaders() answers each request and both ends forget finished streams", () => {
    const pair = opened();
    const ids = [pair.client.openStream(GET, true), pair.client.openStream(GET, true)];
    pair.step("client");
    pair.events("server");
    const heads: ResponseHead[] = [
      { status: 404, statusText: "", headers: [["content-length", "0"]] },
      { status: 204, statusText: "No Content", headers: [] },
    ];
    // Answer out of order: the second request first.
    pair.server.sendHeaders(ids[1], heads[1], true);
    pair.server.sendHeaders(ids[0], heads[0], true);
    assert.equal(pair.server.peerStreamCount, 0);
    assert.deepEqual(pair.events("server"), [
      { type: "finished", streamId: ids[1], local: false },
      { type: "finished", streamId: ids[0], local: false },
    ]);
    const sent = pair.step("server")!;
    assert.equal(sent.frames.length, 2);
    assert.deepEqual(pair.events("client"), [
      { type: "response", streamId: ids[1], head: heads[1], end: true },
      { type: "finished", streamId: ids[1], local: true },
      { type: "response", streamId: ids[0], head: heads[0], end: true },
      { type: "finished", streamId: ids[0], local: true },
    ]);
    assert.equal(pair.client.localStreamCount, 0);
    assert.equal(pair.client.hasStream(ids[0]), false);
  });

  it("Session.openStream() on the server uses even ids and the client serves them", () => {
    const pair = opened();
    const ids = [pair.server.openStream(GET, true), pair.server.openStream(POST, true)];
    assert.deepEqual(ids, [2, 4]);
    pair.step("server");
    const requests = ofType(pair.events("client"), "request");
    assert.deepEqual(requests.map((r) => [r.streamId, r.head.method]), [[2, "GET"], [4, "POST"]]);
    for (const id of ids) pair.client.sendHeaders(id, OK, true);
    pair.step("client");
    assert.deepEqual(
      ofType(pair.events("server"), "response").map((r) => r.streamId),
      ids,
    );
    assert.equal(pair.server.localStreamCount, 0);
    assert.equal(pair.client.peerStreamCount, 0);
  });

  it("Session streams started by both ends at once do not collide", () => {
    const pair = opened();
    const fromClient = pair.client.openStream(GET, true);
    const fromServer = pair.server.openStream(GET, true);
    pair.flush();
    assert.deepEqual(ofType(pair.events("server"), "request").map((r) => r.streamId), [
      fromClient,
    ]);
    assert.deepEqual(ofType(pair.events("client"), "request").map((r) => r.streamId), [
      fromServer,
    ]);
    pair.client.sendHeaders(fromServer, OK, true);
    pair.server.sendHeaders(fromClient, OK, true);
    pair.flush();
    assert.equal(ofType(pair.events("client"), "response")[0].streamId, fromClient);
    assert.equal(ofType(pair.events("server"), "response")[0].streamId, fromServer);
  });

  it("Session.sendData() chunks queued together leave as one DATA frame, ending the body", () => {
    const pair = opened();
    const id = pair.client.openStream(POST, false);
    assert.equal(pair.client.sendData(id, utf8.encode("hel"), false), true);
    assert.equal(pair.client.sendData(id, utf8.encode("lo "), false), true);
    assert.equal(pair.client.sendData(id, utf8.encode("world"), true), true);
    const sent = pair.step("client")!;
    assert.deepEqual(sent.frames.map((f) => [f.type, f.flags]), [
      [FrameType.Headers, 0],
      [FrameType.Data, FLAG_END_STREAM],
    ]);
    const events = pair.events("server");
    assert.deepEqual(events[0], { type: "request", streamId: id, head: POST, end: false });
    const data = ofType(events, "data");
    assert.deepEqual(data.map((d) => d.end), [true]);
    assert.equal(text.decode(concatBytes(data.map((d) => d.chunk))), "hello world");
  });

  it("Session.sendData() chunks queued across messages leave in a frame per message", () => {
    const pair = opened();
    const id = pair.client.openStream(POST, false);
    pair.client.sendData(id, utf8.encode("hel"), false);
    pair.step("client");
    pair.client.sendData(id, utf8.encode("lo"), true);
    const last = pair.step("client")!;
    assert.deepEqual(last.frames.map((f) => [f.type, f.flags]), [[
      FrameType.Data,
      FLAG_END_STREAM,
    ]]);
    const data = ofType(pair.events("server"), "data");
    assert.deepEqual(data.map((d) => [text.decode(d.chunk), d.end]), [["hel", false], [
      "lo",
      true,
    ]]);
  });

  it("Session.sendData() carries a response body and an empty final chunk ends it", () => {
    const pair = opened();
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(id, utf8.encode("part 1,"), false);
    pair.step("server");
    pair.server.sendData(id, utf8.encode(" part 2"), false);
    pair.step("server");
    pair.server.sendData(id, new Uint8Array(0), true);
    const last = pair.step("server")!;
    assert.deepEqual(last.frames.map((f) => [f.type, f.flags, f.payload.byteLength]), [
      [FrameType.Data, FLAG_END_STREAM, 0],
    ]);
    assert.deepEqual(pair.events("server"), [{ type: "finished", streamId: id, local: false }]);
    const events = pair.events("client");
    assert.deepEqual(types(events), ["response", "data", "data", "data", "finished"]);
    const data = ofType(events, "data");
    assert.equal(text.decode(concatBytes(data.map((d) => d.chunk))), "part 1, part 2");
    assert.deepEqual(data.map((d) => d.end), [false, false, true]);
    assert.equal(pair.client.localStreamCount, 0);
    assert.equal(pair.server.peerStreamCount, 0);
  });

  it("Session.sendData() sends a large body as one DATA frame per message, kept as a view", () => {
    const pair = opened();
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    const body = bytes(SMALL_DATA_BYTES * 2 + 10);
    pair.server.sendData(id, body, true);
    const sent = pair.step("server")!;
    const data = framesOf(sent, FrameType.Data);
    assert.deepEqual(data.map((f) => f.payload.byteLength), [SMALL_DATA_BYTES * 2 + 10]);
    const [event] = ofType(pair.events("client"), "data");
    assert.deepEqual(event.chunk, body);
    assert.equal(event.chunk.buffer, sent.bytes.buffer, "most of its message: not copied");
    assert.equal(event.retained, sent.bytes.byteLength, "charged for the whole message");
  });

  it("Session.pollTransmit() cuts DATA to the peer's maxFrameBytes, one frame per message", () => {
    const pair = opened({ client: { settings: { maxFrameBytes: MIN_FRAME_BYTES } } });
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(id, bytes(MIN_FRAME_BYTES + 1), true);
    const first = framesOf(pair.step("server"), FrameType.Data);
    const second = framesOf(pair.step("server"), FrameType.Data);
    assert.deepEqual([...first, ...second].map((f) => f.payload.byteLength), [MIN_FRAME_BYTES, 1]);
    assert.equal(pair.client.phase, "open");
  });

  it("Session.pollTransmit() bounds a message by messageDataBytes and sends the rest next", () => {
    const pair = opened({ server: { messageDataBytes: 100_000 } });
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(id, bytes(300_000), true);
    const sizes: number[] = [];
    for (let sent = pair.step("server"); sent; sent = pair.step("server")) {
      sizes.push(dataBytes(sent.frames));
    }
    // The bound counts body bytes, not frame headers.
    assert.deepEqual(sizes, [100_000, 100_000, 100_000]);
  });

  it("Session.pollTransmit() keeps a message within the peer's maxMessageBytes", () => {
    const maxMessageBytes = MIN_FRAME_BYTES + 10;
    const pair = opened({
      client: { settings: { maxFrameBytes: MIN_FRAME_BYTES, maxMessageBytes } },
    });
    const ids = Array.from({ length: 3 }, () => request(pair, GET, true));
    for (const id of ids) {
      pair.server.sendHeaders(id, OK, false);
      pair.server.sendData(id, bytes(20_000), true);
    }
    const sizes: number[] = [];
    for (let sent = pair.step("server"); sent; sent = pair.step("server")) {
      sizes.push(sent.bytes.byteLength);
    }
    assert.ok(sizes.every((size) => size <= maxMessageBytes), `messages of ${sizes}`);
    const data = ofType(pair.events("client"), "data");
    for (const id of ids) {
      const body = concatBytes(data.filter((d) => d.streamId === id).map((d) => d.chunk));
      assert.deepEqual(body, bytes(20_000));
    }
    assert.equal(pair.client.phase, "open");
  });

  it("Session.pollTransmit() encodes into a scratch buffer when the message fits", () => {
    const pair = opened();
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    const body = bytes(100_000);
    pair.server.sendData(id, body, true);
    const scratch = new Uint8Array(200_000);
    const message = pair.server.pollTransmit(scratch)!;
    assert.equal(message.buffer, scratch.buffer);
    pair.client.handleMessage(message.slice(), pair.now);
    pair.collect();
    assert.deepEqual(concatBytes(ofType(pair.events("client"), "data").map((d) => d.chunk)), body);
  });

  it("Session.pollTransmit() allocates a message larger than the scratch buffer", () => {
    const pair = opened();
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(id, bytes(100), true);
    const scratch = new Uint8Array(16);
    const message = pair.server.pollTransmit(scratch)!;
    assert.notEqual(message.buffer, scratch.buffer);
    assert.ok(message.byteLength > scratch.byteLength);
  });

  it("Session.queuedBytes() counts bytes not yet transmitted", () => {
    const pair = opened();
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(id, bytes(10), false);
    pair.server.sendData(id, bytes(5), false);
    assert.equal(pair.server.queuedBytes(id), 15);
    pair.step("server");
    assert.equal(pair.server.queuedBytes(id), 0);
    assert.equal(pair.server.queuedBytes(999), 0);
  });
});

describe("Session finished events", () => {
  it("Session emits finished on both ends once both halves of a stream close", () => {
    const pair = opened();
    const id = pair.client.openStream(POST, false);
    pair.client.sendData(id, utf8.encode("x"), true);
    pair.step("client");
    assert.deepEqual(types(pair.events("server")), ["request", "data"]);
    pair.server.sendHeaders(id, OK, false);
    assert.equal(pair.server.hasStream(id), true);
    pair.server.sendData(id, utf8.encode("y"), true);
    assert.deepEqual(pair.events("server"), [], "not before the last byte is transmitted");
    pair.step("server");
    assert.deepEqual(pair.events("server"), [{ type: "finished", streamId: id, local: false }]);
    assert.equal(pair.server.hasStream(id), false);
    assert.deepEqual(types(pair.events("client")), ["response", "data", "finished"]);
    assert.equal(pair.client.hasStream(id), false);
  });

  it("Session emits finished on the client only after its request body is sent", () => {
    const pair = opened();
    const id = request(pair, POST, false);
    pair.server.sendHeaders(id, OK, true);
    pair.step("server");
    assert.deepEqual(types(pair.events("client")), ["response"], "the request half is open");
    pair.client.sendData(id, new Uint8Array(0), true);
    pair.step("client");
    assert.deepEqual(pair.events("client"), [{ type: "finished", streamId: id, local: true }]);
    assert.deepEqual(types(pair.events("server")), ["data", "finished"]);
  });

  it("Session emits no finished event for a stream that was reset", () => {
    const pair = opened();
    const id = request(pair, POST, false);
    pair.client.reset(id, ResetCode.Cancel, "");
    pair.step("client");
    assert.deepEqual(types(pair.events("client")), []);
    assert.deepEqual(types(pair.events("server")), ["reset"]);
  });
});

describe("Session flow control", () => {
  it("Session sender stops at the peer's window and consume() resumes it", () => {
    const window = 1024;
    const pair = opened({ client: { settings: { initialWindow: window } } });
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    const body = bytes(4000, 7);
    pair.server.sendData(id, body, true);
    const first = pair.step("server")!;
    assert.equal(dataBytes(first.frames), window);
    assert.equal(pair.server.queuedBytes(id), 4000 - window);
    assert.equal(pair.step("server"), undefined, "nothing more until the window grows");

    const received: Uint8Array[] = [];
    let granted = 0;
    let sentBytes = window;
    let ended = false;
    for (let round = 0; round < 20 && !ended; round++) {
      for (const event of pair.events("client")) {
        if (event.type !== "data") continue;
        received.push(event.chunk);
        ended = event.end;
        pair.client.consume(id, event.chunk.byteLength);
      }
      const update = pair.step("client");
      for (const f of framesOf(update, FrameType.WindowUpdate)) {
        assert.equal(f.streamId, id);
        granted += decodeWindowUpdate(f.payload);
      }
      const more = pair.step("server");
      sentBytes += dataBytes(framesOf(more));
      assert.ok(sentBytes <= window + granted, `sent ${sentBytes} with ${granted} granted`);
    }
    assert.ok(ended, "the body ended");
    assert.deepEqual(concatBytes(received), body);
    assert.equal(pair.server.peerStreamCount, 0);
  });

  it("Session.consume() grants a window update at half the window", () => {
    const pair = opened({ client: { settings: { initialWindow: 1024 } } });
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(id, bytes(2048), false);
    pair.step("server");
    pair.events("client");
    pair.client.consume(id, 511);
    assert.equal(pair.client.pollTransmit(), undefined);
    pair.client.consume(id, 0);
    pair.client.consume(id, -5);
    assert.equal(pair.client.pollTransmit(), undefined);
    pair.client.consume(id, 1);
    const update = pair.step("client")!;
    assert.deepEqual(update.frames.map((f) => [f.type, f.streamId]), [[
      FrameType.WindowUpdate,
      id,
    ]]);
    assert.equal(decodeWindowUpdate(update.frames[0].payload), 512);
    assert.equal(dataBytes(framesOf(pair.step("server"))), 512);
  });

  it("Session.consume() grants the connection's credit back once the peer has none left, however little, while other streams' unread bytes hold the rest", () => {
    // Two streams whose readers have stopped hold 3,000 of a 4,096-byte connection window;
    // a third's reader takes all it gets. Granting only at half the window (2,048 consumed)
    // would never grant: the peer could send nothing more on any stream.
    const window = 4096;
    const pair = opened({
      client: { settings: { initialWindow: window, connectionWindow: window } },
    });
    const [stopped1, stopped2, reading] = [request(pair), request(pair), request(pair)];
    for (const id of [stopped1, stopped2, reading]) pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(stopped1, bytes(1500), false);
    pair.server.sendData(stopped2, bytes(1500), false);
    pair.server.sendData(reading, bytes(3000), false);
    let sent = 0;
    for (let step = pair.step("server"); step; step = pair.step("server")) {
      sent += dataBytes(framesOf(step));
    }
    assert.equal(sent, window, "the connection window is spent");
    pair.events("client");
    pair.client.consume(reading, window - 3000);
    const update = pair.step("client")!;
    assert.deepEqual(
      framesOf(update, FrameType.WindowUpdate).map((
        f,
      ) => [f.streamId, decodeWindowUpdate(f.payload)]),
      [[0, window - 3000]],
    );
    assert.equal(
      dataBytes(framesOf(pair.step("server"))),
      window - 3000,
      "the reader's stream goes on",
    );
  });

  it("Session grants consumed connection credit when arriving bytes of stopped streams leave the peer none", () => {
    // The reader's 1,096 bytes are consumed while the window still has room (no grant: below
    // half, and the peer has credit); then two stopped streams' 3,000 bytes spend the rest.
    const window = 4096;
    const pair = opened({
      client: { settings: { initialWindow: window, connectionWindow: window } },
    });
    const [reading, stopped1, stopped2] = [request(pair), request(pair), request(pair)];
    for (const id of [reading, stopped1, stopped2]) pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(reading, bytes(window - 3000), false);
    pair.step("server");
    pair.events("client");
    pair.client.consume(reading, window - 3000);
    assert.equal(pair.client.pollTransmit(), undefined, "no grant yet");
    pair.server.sendData(stopped1, bytes(1500), false);
    pair.server.sendData(stopped2, bytes(1500), false);
    pair.server.sendData(reading, bytes(1000), false);
    assert.equal(dataBytes(framesOf(pair.step("server"))), 3000, "the window is spent");
    const update = pair.step("client")!;
    assert.deepEqual(
      framesOf(update, FrameType.WindowUpdate).map((f) => [
        f.streamId,
        decodeWindowUpdate(f.payload),
      ]),
      [[0, window - 3000]],
    );
    assert.equal(dataBytes(framesOf(pair.step("server"))), 1000, "the reader's stream goes on");
  });

  it("Session.consume() of a finished stream grants no stream credit, only the connection's", () => {
    const pair = opened({ client: { settings: { initialWindow: 1024, connectionWindow: 1024 } } });
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(id, bytes(600), true);
    pair.step("server");
    pair.client.consume(id, 600);
    const update = pair.step("client")!;
    assert.deepEqual(update.frames.map((f) => [f.type, f.streamId]), [[FrameType.WindowUpdate, 0]]);
    assert.equal(decodeWindowUpdate(update.frames[0].payload), 600);
  });

  it("Session.consume() refuses to grant credit for bytes that were not received", () => {
    const pair = opened({ client: { settings: { initialWindow: 1024 } } });
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(id, bytes(300), false);
    pair.step("server");
    pair.events("client");
    assert.throws(
      () => pair.client.consume(id, 301),
      (error: unknown) =>
        error instanceof RangeError &&
        error.message ===
          `Cannot consume 301 bytes on stream ${id}: 300 received and not yet consumed`,
    );
    pair.client.consume(id, 200);
    assert.throws(() => pair.client.consume(id, 101), RangeError);
    pair.client.consume(id, 100);
    assert.throws(() => pair.client.consume(id, 1), RangeError);
    assert.throws(
      () => pair.client.consume(12345, 1),
      (error: unknown) =>
        error instanceof RangeError &&
        error.message === "Cannot consume 1 bytes: 0 received and not yet consumed",
      "nor for bytes on a stream that never was",
    );
    // The refusals changed nothing: the 300 bytes consumed are below half the window.
    assert.equal(pair.client.pollTransmit(), undefined);
    pair.server.sendData(id, bytes(300), false);
    pair.step("server");
    pair.client.consume(id, 300);
    const update = pair.step("client")!;
    assert.equal(decodeWindowUpdate(framesOf(update, FrameType.WindowUpdate)[0].payload), 600);
  });

  it("Session request bodies respect the server's window too", () => {
    const pair = opened({ server: { settings: { initialWindow: 1024 } } });
    const id = pair.client.openStream(POST, false);
    pair.client.sendData(id, bytes(3000), true);
    const first = pair.step("client")!;
    assert.equal(dataBytes(first.frames), 1024);
    const events = pair.events("server");
    const chunks = ofType(events, "data");
    pair.server.consume(id, chunks.reduce((n, d) => n + d.chunk.byteLength, 0));
    const update = pair.step("server")!;
    assert.equal(decodeWindowUpdate(framesOf(update, FrameType.WindowUpdate)[0].payload), 1024);
    assert.equal(dataBytes(framesOf(pair.step("client"))), 1024);
  });

  it("Session.sendData() returns false at OUTBOX_HIGH_WATER and a writable event follows", () => {
    const pair = opened();
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    assert.equal(pair.server.sendData(id, bytes(OUTBOX_HIGH_WATER - 1), false), true);
    assert.equal(pair.server.sendData(id, bytes(1), false), false);
    assert.equal(pair.server.sendData(id, bytes(100), false), false);
    assert.deepEqual(pair.events("server"), []);
    pair.step("server");
    assert.deepEqual(pair.events("server"), [{ type: "writable", streamId: id }]);
    assert.equal(pair.server.sendData(id, bytes(10), false), true);
    pair.step("server");
    assert.deepEqual(pair.events("server"), [], "writable only after a false");
  });

  it("Session emits writable only once the window lets the outbox drain", () => {
    const pair = opened({ client: { settings: { initialWindow: 1024 } } });
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    assert.equal(pair.server.sendData(id, bytes(OUTBOX_HIGH_WATER + 1500), false), false);
    pair.step("server");
    assert.deepEqual(ofType(pair.events("server"), "writable"), [], "still above high water");
    for (const event of pair.events("client")) {
      if (event.type === "data") pair.client.consume(id, event.chunk.byteLength);
    }
    pair.step("client");
    pair.step("server");
    assert.deepEqual(ofType(pair.events("server"), "writable"), [
      { type: "writable", streamId: id },
    ]);
  });

  it("Session emits no writable event for a stream whose body has ended", () => {
    const pair = opened();
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    assert.equal(pair.server.sendData(id, bytes(OUTBOX_HIGH_WATER * 2), true), false);
    pair.flush();
    assert.deepEqual(ofType(pair.events("server"), "writable"), []);
  });

  it("Session round robin: a big body does not delay a small one in the same message", () => {
    const pair = opened();
    const big = request(pair);
    const small = request(pair);
    pair.server.sendHeaders(big, OK, false);
    // Larger than one message, so its body continues past it and keeps its round-robin places.
    pair.server.sendData(big, bytes(3_000_000), true);
    pair.server.sendHeaders(small, OK, false);
    pair.server.sendData(small, utf8.encode("tiny"), true);
    const sent = pair.take("server")!;
    const data = framesOf(sent, FrameType.Data);
    // Small sends go first, whole; the big body takes the room left, as one frame.
    assert.deepEqual(data.map((f) => [f.streamId, f.flags]), [[small, FLAG_END_STREAM], [big, 0]]);
    assert.ok(data[1].payload.byteLength > 500_000, "the big body fills the half-window message");
  });

  it("Session puts a whole small body right behind its HEADERS, other DATA where it was", () => {
    const pair = opened();
    const early = request(pair);
    const late = request(pair);
    pair.server.sendHeaders(early, OK, false);
    pair.server.sendData(early, utf8.encode("first"), false);
    pair.step("server");
    // early's last DATA and late's HEADERS + DATA leave in one message.
    pair.server.sendData(early, utf8.encode("rest"), true);
    pair.server.sendHeaders(late, OK, false);
    pair.server.sendData(late, utf8.encode("tiny"), true);
    const sent = pair.step("server")!;
    assert.deepEqual(sent.frames.map((f) => [f.type, f.streamId]), [
      [FrameType.Headers, late],
      [FrameType.Data, late],
      [FrameType.Data, early],
    ]);
    const bodies = ofType(pair.events("client"), "data").map((e) => [
      e.streamId,
      new TextDecoder().decode(e.chunk),
      e.end,
    ]);
    assert.deepEqual(bodies, [[early, "first", false], [late, "tiny", true], [
      early,
      "rest",
      true,
    ]]);
  });

  it("Session sends a large body in frames of half the peer's window, each granted back once read", () => {
    // Frames a little short of the half would leave the reader below its grant threshold,
    // and the sender would wait for the whole window to be read: stop and wait.
    const pair = opened();
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    for (let i = 0; i < 4; i++) pair.server.sendData(id, bytes(1024 * 1024), false);
    for (let message = 0; message < 4; message++) {
      pair.step("server");
      const data = ofType(pair.events("client"), "data");
      assert.deepEqual(data.map((d) => d.chunk.byteLength), [512 * 1024]);
      pair.client.consume(id, data[0].chunk.byteLength);
      const grant = framesOf(pair.step("client"), FrameType.WindowUpdate);
      assert.deepEqual(grant.map((f) => decodeWindowUpdate(f.payload)), [512 * 1024]);
    }
  });

  it("Session round robin alternates chunks of equally big bodies", () => {
    const pair = opened();
    const a = request(pair);
    const b = request(pair);
    for (const id of [a, b]) {
      pair.server.sendHeaders(id, OK, false);
      pair.server.sendData(id, bytes(SMALL_DATA_BYTES * 12), true);
    }
    // One message holds half the client's 1 MiB window, as one frame; the bodies take turns,
    // and share a message once one of them has less left than the room.
    const turns: number[][] = [];
    for (let sent = pair.take("server"); sent; sent = pair.take("server")) {
      turns.push(framesOf(sent, FrameType.Data).map((f) => f.streamId));
    }
    assert.deepEqual(turns, [[a], [b], [a, b]]);
  });

  for (
    const [window, bound] of [
      [64 * 1024, 256 * 1024],
      [1024 * 1024, 512 * 1024],
      [2 * 1024 * 1024, 1024 * 1024],
      [8 * 1024 * 1024, 1024 * 1024],
    ]
  ) {
    it(`Session puts ${bound / 1024} KiB of DATA in a message towards a ${window / 1024} KiB window`, () => {
      // Half the peer's window, so that one message never spends a stream's whole window and
      // stalls it; within 256 KiB – 1 MiB. Many streams, so the windows themselves do not bind.
      const pair = opened({ client: { settings: { initialWindow: window } } });
      const ids = Array.from({ length: 40 }, () => request(pair));
      for (const id of ids) {
        pair.server.sendHeaders(id, OK, false);
        pair.server.sendData(id, bytes(SMALL_DATA_BYTES), true);
      }
      const data = framesOf(pair.take("server"), FrameType.Data);
      // A small body that does not fit whole waits for the next message.
      const total = data.reduce((sum, f) => sum + f.payload.byteLength, 0);
      assert.ok(total <= bound, `${total} bytes in the message`);
      assert.ok(total > bound - SMALL_DATA_BYTES, `${total} bytes in the message`);
    });
  }

  it("Session keeps an explicit maxMessageBytes whatever the peer's window", () => {
    const pair = opened({
      client: { settings: { initialWindow: 8 * 1024 * 1024 } },
      server: { messageDataBytes: 4096 },
    });
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(id, bytes(SMALL_DATA_BYTES * 4), true);
    const data = framesOf(pair.take("server"), FrameType.Data);
    assert.equal(data.length, 1);
  });

  it("Session round robin: a stream blocked on its window does not block another", () => {
    const pair = opened({ client: { settings: { initialWindow: 1024 } } });
    const blocked = request(pair);
    const free = request(pair);
    pair.server.sendHeaders(blocked, OK, false);
    pair.server.sendData(blocked, bytes(5000), false);
    pair.step("server");
    pair.server.sendHeaders(free, OK, false);
    pair.server.sendData(free, bytes(100), true);
    const sent = pair.step("server")!;
    assert.equal(dataBytes(sent.frames, free), 100);
    assert.equal(dataBytes(sent.frames, blocked), 0);
  });

  it("Session closes with FlowControlError on data beyond the window", () => {
    const pair = opened({ server: { settings: { initialWindow: 1024 } } });
    const id = request(pair, POST, false);
    pair.inject("server", [frame(FrameType.Data, id, bytes(1000))]);
    assert.equal(pair.server.phase, "open");
    pair.inject("server", [frame(FrameType.Data, id, bytes(24))]);
    assert.equal(pair.server.phase, "open", "exactly the window is fine");
    pair.events("server");
    pair.inject("server", [frame(FrameType.Data, id, bytes(1))]);
    assertClosedBy(pair.events("server"), CloseCode.FlowControlError, /exceeds window 0/);
    assert.equal(pair.server.phase, "closed");
  });

  it("Session closes with FlowControlError on a zero window increment", () => {
    const pair = opened();
    const id = pair.client.openStream(POST, false);
    pair.step("client");
    pair.inject("client", [frame(FrameType.WindowUpdate, id, encodeWindowUpdate(0))]);
    assertClosedBy(pair.events("client"), CloseCode.FlowControlError, /increment 0/);
  });

  it("Session closes with FlowControlError on a window past 2^31 − 1", () => {
    const pair = opened();
    const id = pair.client.openStream(POST, false);
    pair.step("client");
    const room = 0x7fff_ffff - DEFAULT_SETTINGS.initialWindow;
    pair.inject("client", [frame(FrameType.WindowUpdate, id, encodeWindowUpdate(room))]);
    assert.equal(pair.client.phase, "open", "up to 2^31 − 1 is fine");
    pair.inject("client", [frame(FrameType.WindowUpdate, id, encodeWindowUpdate(1))]);
    assertClosedBy(pair.events("client"), CloseCode.FlowControlError);
  });
});

describe("Session limits", () => {
  it("Session.openStream() throws RangeError past the peer's maxConcurrentStreams", () => {
    const pair = opened({ server: { settings: { maxConcurrentStreams: 2 } } });
    assert.equal(pair.client.canOpenStream, true);
    const a = pair.client.openStream(GET, true);
    pair.client.openStream(GET, true);
    assert.equal(pair.client.canOpenStream, false);
    assert.throws(() => pair.client.openStream(GET, true), RangeError);
    pair.flush();
    pair.server.sendHeaders(a, OK, true);
    pair.flush();
    assert.equal(pair.client.canOpenStream, true);
    assert.equal(pair.client.openStream(GET, true), 5, "the refused call used no id");
  });

  it("Session refuses a stream past maxConcurrentStreams with RESET Refused", () => {
    const pair = opened({ server: { settings: { maxConcurrentStreams: 2 } } });
    request(pair);
    request(pair);
    pair.inject("server", [requestFrame(5)]);
    assert.deepEqual(pair.events("server"), [], "no request event");
    const sent = pair.take("server")!;
    assert.deepEqual(sent.frames.map((f) => [f.type, f.streamId]), [[FrameType.Reset, 5]]);
    assert.equal(decodeReset(sent.frames[0].payload).code, ResetCode.Refused);
    assert.match(decodeReset(sent.frames[0].payload).reason, /limit 2/);
    assert.equal(pair.server.phase, "open");
    assert.equal(pair.server.peerStreamCount, 2);
  });

  it("Session.openStream() throws RangeError for a head over the peer's maxHeaderBytes", () => {
    const pair = opened({ server: { settings: { maxHeaderBytes: 1024 } } });
    const big: RequestHead = { method: "GET", url: "/", headers: [["x-big", "b".repeat(1100)]] };
    assert.throws(() => pair.client.openStream(big, true), RangeError);
    assert.equal(pair.client.pollTransmit(), undefined);
    assert.equal(pair.client.localStreamCount, 0);
    assert.equal(pair.client.openStream(GET, true), 1, "the refused call used no id");
  });

  it("Session.openStream() throws RangeError for a head over the peer's maxFrameBytes", () => {
    const pair = opened({ server: { settings: { maxFrameBytes: MIN_FRAME_BYTES } } });
    assert.equal(pair.client.peerSettings.maxHeaderBytes > MIN_FRAME_BYTES, true);
    const big: RequestHead = {
      method: "GET",
      url: "/",
      headers: [["x-big", "b".repeat(MIN_FRAME_BYTES + 1)]],
    };
    assert.throws(() => pair.client.openStream(big, true), RangeError);
    assert.equal(pair.client.pollTransmit(), undefined);
  });

  it("Session.sendHeaders() throws RangeError for a head over the peer's maxHeaderBytes", () => {
    const pair = opened({ client: { settings: { maxHeaderBytes: 1024 } } });
    const id = request(pair);
    const big: ResponseHead = { status: 200, statusText: "", headers: [["x", "y".repeat(1100)]] };
    assert.throws(() => pair.server.sendHeaders(id, big, true), RangeError);
    pair.server.sendHeaders(id, OK, true);
    pair.step("server");
    assert.equal(ofType(pair.events("client"), "response").length, 1);
  });

  it("Session resets a request whose head is over maxHeaderBytes with ResetCode.TooLarge", () => {
    const pair = opened({ server: { settings: { maxHeaderBytes: 1024 } } });
    const big: RequestHead = { method: "GET", url: "/", headers: [["x", "y".repeat(1100)]] };
    pair.inject("server", [requestFrame(1, big)]);
    assert.deepEqual(pair.events("server"), []);
    const sent = pair.take("server")!;
    assert.deepEqual(sent.frames.map((f) => [f.type, f.streamId]), [[FrameType.Reset, 1]]);
    assert.equal(decodeReset(sent.frames[0].payload).code, ResetCode.TooLarge);
    assert.equal(pair.server.phase, "open", "the connection stays up");
    pair.inject("server", [requestFrame(3)]);
    assert.equal(ofType(pair.events("server"), "request").length, 1);
  });

  it("Session resets a response whose head is over maxHeaderBytes with ResetCode.TooLarge", () => {
    const pair = opened({ client: { settings: { maxHeaderBytes: 1024 } } });
    const id = request(pair);
    const big = encodeResponseHead({
      status: 200,
      statusText: "",
      headers: [["x", "y".repeat(1100)]],
    });
    pair.inject("client", [frame(FrameType.Headers, id, big, FLAG_END_STREAM)]);
    const [reset] = pair.events("client") as EventOf<"reset">[];
    assert.equal(reset.type, "reset");
    assert.equal(reset.streamId, id);
    assert.equal(reset.code, ResetCode.TooLarge);
    assert.equal(reset.byPeer, false);
    assert.equal(pair.client.localStreamCount, 0);
    assert.equal(pair.client.phase, "open");
    pair.step("client");
    const [peerReset] = pair.events("server") as EventOf<"reset">[];
    assert.deepEqual(
      [peerReset.type, peerReset.streamId, peerReset.code, peerReset.byPeer],
      ["reset", id, ResetCode.TooLarge, true],
    );
    assert.equal(pair.server.peerStreamCount, 0);
  });
});

describe("Session resets", () => {
  it("Session.reset() by the client reaches the server as a reset event", () => {
    const pair = opened();
    const id = request(pair, POST, false);
    pair.client.reset(id, ResetCode.Cancel, "Aborted by the user");
    assert.equal(pair.client.localStreamCount, 0);
    assert.deepEqual(pair.events("client"), [], "a local reset makes no event");
    const sent = pair.step("client")!;
    assert.deepEqual(sent.frames.map((f) => [f.type, f.streamId]), [[FrameType.Reset, id]]);
    assert.deepEqual(pair.events("server"), [
      {
        type: "reset",
        streamId: id,
        local: false,
        code: ResetCode.Cancel,
        reason: "Aborted by the user",
        byPeer: true,
      },
    ]);
    assert.equal(pair.server.peerStreamCount, 0);
    assert.throws(() => pair.server.sendHeaders(id, OK, true), TypeError);
  });

  it("Session.reset() by the server reaches the client as a reset event", () => {
    const pair = opened();
    const id = request(pair, POST, false);
    pair.server.reset(id, ResetCode.Internal, "Handler failed");
    assert.equal(pair.server.peerStreamCount, 0);
    pair.step("server");
    assert.deepEqual(pair.events("client"), [
      {
        type: "reset",
        streamId: id,
        local: true,
        code: ResetCode.Internal,
        reason: "Handler failed",
        byPeer: true,
      },
    ]);
    assert.equal(pair.client.localStreamCount, 0);
    assert.throws(() => pair.client.sendData(id, bytes(1), true), TypeError);
  });

  it("Session.reset() of an unknown or finished stream does nothing", () => {
    const pair = opened();
    pair.client.reset(1, ResetCode.Cancel, "");
    pair.client.reset(99, ResetCode.Cancel, "");
    assert.equal(pair.client.pollTransmit(), undefined);
  });

  it("Session ignores frames that arrive for a stream it already reset", () => {
    const pair = opened();
    const id = request(pair, POST, false);
    pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(id, bytes(100), false);
    pair.server.reset(99, ResetCode.Cancel, ""); // no-op
    const inFlight = pair.take("server")!;
    pair.client.reset(id, ResetCode.Cancel, "");
    pair.step("client");
    assert.equal(ofType(pair.events("server"), "reset").length, 1);
    pair.deliver(inFlight);
    assert.deepEqual(pair.events("client"), []);
    pair.inject("client", [
      frame(FrameType.Data, id, bytes(3), FLAG_END_STREAM),
      frame(FrameType.WindowUpdate, id, encodeWindowUpdate(10)),
      frame(FrameType.Reset, id, encodeReset(ResetCode.Cancel, "late")),
      frame(FrameType.Headers, id, encodeResponseHead(OK)),
    ]);
    assert.deepEqual(pair.events("client"), []);
    assert.equal(pair.client.phase, "open");
    pair.inject("server", [
      frame(FrameType.Data, id, bytes(3), FLAG_END_STREAM),
      frame(FrameType.WindowUpdate, id, encodeWindowUpdate(10)),
      frame(FrameType.Reset, id, encodeReset(ResetCode.Cancel, "again")),
    ]);
    assert.deepEqual(pair.events("server"), []);
    assert.equal(pair.server.phase, "open");
  });

  it("Session ignores frames for a stream that finished normally", () => {
    const pair = opened();
    const id = request(pair);
    pair.server.sendHeaders(id, OK, true);
    pair.step("server");
    pair.events("client");
    pair.inject("client", [frame(FrameType.WindowUpdate, id, encodeWindowUpdate(1))]);
    pair.inject("server", [frame(FrameType.Data, id, bytes(1))]);
    assert.deepEqual([pair.client.phase, pair.server.phase], ["open", "open"]);
  });

  it("Session closes with RateLimited once peer resets exceed the limit (Rapid Reset)", () => {
    const pair = opened({ server: { resetRateLimit: { burst: 3, perSecond: 0 } } });
    for (let i = 0; i < 3; i++) {
      const id = pair.client.openStream(GET, false);
      pair.client.reset(id, ResetCode.Cancel, "");
    }
    pair.step("client");
    assert.equal(pair.server.phase, "open");
    assert.equal(ofType(pair.events("server"), "reset").length, 3);
    const id = pair.client.openStream(GET, false);
    pair.client.reset(id, ResetCode.Cancel, "");
    pair.step("client");
    assertClosedBy(pair.events("server"), CloseCode.RateLimited, /resets/);
  });

  it("Session reset limiter refills with time", () => {
    const pair = opened({ server: { resetRateLimit: { burst: 2, perSecond: 1 } } });
    const churn = () => {
      pair.client.reset(pair.client.openStream(GET, false), ResetCode.Cancel, "");
      pair.step("client");
    };
    churn();
    churn();
    pair.setTime(1000);
    churn();
    assert.equal(pair.server.phase, "open");
    churn();
    assertClosedBy(pair.events("server"), CloseCode.RateLimited);
  });

  it("Session counts its own refusals against the peer's reset limit", () => {
    const pair = opened({
      server: {
        settings: { maxConcurrentStreams: 1 },
        resetRateLimit: { burst: 2, perSecond: 0 },
      },
    });
    request(pair, GET, false);
    pair.inject("server", [requestFrame(3), requestFrame(5)]);
    assert.equal(pair.server.phase, "open");
    const refusals = framesOf(pair.take("server"), FrameType.Reset);
    assert.deepEqual(refusals.map((f) => f.streamId), [3, 5]);
    pair.inject("server", [requestFrame(7)]);
    assertClosedBy(pair.events("server"), CloseCode.RateLimited);
  });
});

describe("Session heartbeat", () => {
  it("Session sends pings with appData and the peer answers with a pong of the same data", () => {
    const pair = opened({ client: { heartbeat: HEARTBEAT, appData: "agent-7" } });
    assert.equal(pair.advance(), 1000);
    const ping = pair.step("client")!;
    assert.deepEqual(ping.frames.map((f) => f.type), [FrameType.Ping]);
    assert.deepEqual(decodePing(ping.frames[0].payload), { sentAt: 1000, data: "agent-7" });
    assert.deepEqual(pair.events("server"), [{ type: "ping", data: "agent-7" }]);
    pair.setTime(1025);
    const pong = pair.step("server")!;
    assert.deepEqual(pong.frames.map((f) => f.type), [FrameType.Pong]);
    assert.deepEqual(decodePing(pong.frames[0].payload), { sentAt: 1000, data: "agent-7" });
    assert.deepEqual(pair.events("client"), [{ type: "pong", data: "agent-7", rtt: 25 }]);
    assert.equal(pair.client.rtt, 25);
    assert.equal(pair.server.rtt, undefined);
  });

  it("Session answerPing hook chooses the pong's data", () => {
    const pair = opened({
      server: { heartbeat: HEARTBEAT, appData: "server-1" },
      client: { answerPing: (data) => `seen ${data}` },
    });
    pair.advance();
    pair.step("server");
    assert.deepEqual(pair.events("client"), [{ type: "ping", data: "server-1" }]);
    pair.setTime(1003);
    pair.step("client");
    assert.deepEqual(pair.events("server"), [{ type: "pong", data: "seen server-1", rtt: 3 }]);
    assert.equal(pair.server.rtt, 3);
  });

  it("Session pings from both ends cross without confusion", () => {
    const pair = opened({
      client: { heartbeat: HEARTBEAT, appData: "c" },
      server: { heartbeat: HEARTBEAT, appData: "s" },
    });
    pair.advance();
    pair.flush();
    assert.deepEqual(pair.events("client"), [
      { type: "ping", data: "s" },
      { type: "pong", data: "c", rtt: 0 },
    ]);
    assert.deepEqual(pair.events("server"), [
      { type: "ping", data: "c" },
      { type: "pong", data: "s", rtt: 0 },
    ]);
  });

  it("Session heartbeat starts when the session opens, jittered by the injected random", () => {
    const pair = new SessionPair({
      client: { heartbeat: { interval: 1000, timeout: 5000, jitter: 0.5 }, random: () => 0 },
    });
    pair.client.hello({});
    pair.step("client");
    pair.setTime(300);
    pair.server.accept({ id: TEST_ID });
    pair.flush();
    assert.equal(pair.client.pollTimeout(), 300 + 500);
  });

  it("Session stays open while the peer answers every ping", () => {
    const pair = opened({ client: { heartbeat: HEARTBEAT } });
    for (let i = 0; i < 10; i++) {
      pair.advance();
      pair.flush();
    }
    assert.equal(pair.now, 10_000);
    assert.equal(pair.client.phase, "open");
    assert.equal(ofType(pair.events("client"), "pong").length, 10);
  });

  it("Session closes with HeartbeatTimeout when the peer is silent", () => {
    const pair = opened({ client: { heartbeat: HEARTBEAT } });
    const pings: number[] = [];
    for (let i = 0; i < 5 && pair.client.phase !== "closed"; i++) {
      pair.advance("client");
      const sent = pair.take("client"); // lost
      if (sent) pings.push(pair.now);
    }
    assert.deepEqual(pings, [1000, 2000]);
    assert.equal(pair.now, 3000);
    const close = closeOf(pair.events("client"));
    assert.equal(close.code, CloseCode.HeartbeatTimeout);
    assert.equal(pair.client.phase, "closed");
    assert.equal(pair.client.pollTimeout(), undefined);
  });

  it("Session treats any message from the peer as life", () => {
    const pair = opened({
      client: { heartbeat: { interval: 10_000, timeout: 3000 }, random: () => 0.5 },
    });
    pair.setTime(2500);
    pair.inject("client", [frame(FrameType.Noop, 0, new Uint8Array(0))]);
    assert.equal(pair.client.pollTimeout(), 5500);
    pair.setTime(5499);
    pair.tick();
    assert.equal(pair.client.phase, "open");
    assert.equal(pair.advance("client"), 5500);
    assert.equal(closeOf(pair.events("client")).code, CloseCode.HeartbeatTimeout);
  });

  it("Session.handleTimeout() before a deadline is a no-op", () => {
    const pair = opened({ client: { heartbeat: HEARTBEAT } });
    pair.setTime(999);
    pair.tick();
    assert.equal(pair.client.pollTransmit(), undefined);
    assert.equal(pair.client.pollTimeout(), 1000);
    assert.deepEqual(pair.events("client"), []);
  });

  it("Session pong with a send time in the future gives no rtt", () => {
    const pair = opened({ client: { heartbeat: HEARTBEAT } });
    pair.inject("client", [frame(FrameType.Pong, 0, encodePing(50, "x"))]);
    assert.deepEqual(pair.events("client"), [{ type: "pong", data: "x", rtt: undefined }]);
    assert.equal(pair.client.rtt, undefined);
  });
});

describe("Session goAway", () => {
  it("Session.goAway() refuses new streams, lets in-flight ones finish, resets unseen ones", () => {
    const pair = opened();
    const inFlight = request(pair, POST, false);
    const unseen = pair.client.openStream(GET, true);
    const crossing = pair.take("client")!; // still on the wire when the server goes away
    pair.server.goAway(CloseCode.GoingAway, "Restarting");
    assert.equal(pair.server.phase, "draining");
    const goAway = pair.step("server")!;
    assert.deepEqual(decodeGoAway(goAway.frames[0].payload), {
      lastStreamId: inFlight,
      code: CloseCode.GoingAway,
      reason: "Restarting",
    });
    assert.deepEqual(pair.events("client"), [
      {
        type: "reset",
        streamId: unseen,
        local: true,
        code: ResetCode.Refused,
        reason: "Peer is going away",
        byPeer: true,
      },
      { type: "goaway", lastStreamId: inFlight, code: CloseCode.GoingAway, reason: "Restarting" },
    ]);
    assert.equal(pair.client.phase, "draining");
    assert.equal(pair.client.peerGoAwayLastId, inFlight);
    assert.equal(pair.client.canOpenStream, false);
    assert.throws(() => pair.client.openStream(GET, true), TypeError);

    // The crossing request reaches a draining server: refused, not served.
    pair.deliver(crossing);
    assert.deepEqual(pair.events("server"), []);
    const refusal = framesOf(pair.step("server"), FrameType.Reset);
    assert.deepEqual(refusal.map((f) => [f.streamId, decodeReset(f.payload).code]), [[
      unseen,
      ResetCode.Refused,
    ]]);
    assert.deepEqual(pair.events("client"), [], "the client already gave that stream up");

    // The in-flight exchange finishes normally.
    pair.client.sendData(inFlight, utf8.encode("body"), true);
    pair.step("client");
    assert.deepEqual(types(pair.events("server")), ["data"]);
    pair.server.sendHeaders(inFlight, OK, true);
    pair.step("server");
    assert.deepEqual(types(pair.events("server")), ["finished"]);
    assert.deepEqual(types(pair.events("client")), ["response", "finished"]);
    assert.equal(pair.client.localStreamCount, 0);
    assert.equal(pair.server.peerStreamCount, 0);
  });

  it("Session.goAway() with no peer streams announces last stream id 0", () => {
    const pair = opened();
    pair.server.goAway(CloseCode.Normal, "");
    pair.step("server");
    const [goaway] = ofType(pair.events("client"), "goaway");
    assert.equal(goaway.lastStreamId, 0);
    assert.throws(() => pair.server.openStream(GET, true), TypeError);
  });

  it("Session.goAway() by the client refuses streams the server opens later", () => {
    const pair = opened();
    pair.client.goAway(CloseCode.Normal, "Bye");
    pair.inject("client", [requestFrame(2)]);
    assert.deepEqual(pair.events("client"), []);
    const refusal = framesOf(pair.take("client"), FrameType.Reset);
    assert.deepEqual(refusal.map((f) => [f.streamId, decodeReset(f.payload).code]), [[
      2,
      ResetCode.Refused,
    ]]);
  });

  it("Session.goAway() during the handshake or after close does nothing", () => {
    const pair = new SessionPair();
    pair.server.goAway(CloseCode.GoingAway, "");
    assert.equal(pair.server.pollTransmit(), undefined);
    assert.equal(pair.server.phase, "handshake");
    const open = opened();
    open.server.close();
    open.server.goAway(CloseCode.GoingAway, "");
    assert.equal(open.server.pollTransmit(), undefined);
    assert.equal(open.server.phase, "closed");
  });
});

describe("Session nudge", () => {
  function noops(sent: Sent | undefined): number {
    return framesOf(sent, FrameType.Noop).length;
  }

  it("Session server transmits a NOOP after handleTimeout(now) when a request got no answer yet", () => {
    const pair = opened();
    pair.client.openStream(GET, true);
    pair.step("client");
    assert.equal(pair.server.pollTimeout(), pair.now, "the nudge is due at once");
    assert.equal(pair.server.pollTransmit(), undefined, "nothing before the timer");
    pair.tick();
    const sent = pair.step("server")!;
    assert.deepEqual(sent.frames.map((f) => [f.type, f.streamId, f.payload.byteLength]), [[
      FrameType.Noop,
      0,
      0,
    ]]);
    assert.deepEqual(pair.events("client"), [], "NOOP means nothing to the client");
    assert.equal(pair.server.pollTimeout(), undefined);
    pair.tick();
    assert.equal(pair.server.pollTransmit(), undefined, "one nudge per message");
  });

  it("Session server sends no NOOP when a response was queued before the timer", () => {
    const pair = opened();
    const id = pair.client.openStream(GET, true);
    pair.step("client");
    pair.server.sendHeaders(id, OK, true);
    pair.tick();
    const sent = pair.step("server")!;
    assert.equal(noops(sent), 0);
    assert.deepEqual(sent.frames.map((f) => f.type), [FrameType.Headers]);
  });

  it("Session server sends no NOOP when the response already went out", () => {
    const pair = opened();
    const id = pair.client.openStream(GET, true);
    pair.step("client");
    pair.server.sendHeaders(id, OK, true);
    pair.step("server");
    assert.equal(pair.server.pollTimeout(), undefined);
    pair.tick();
    assert.equal(pair.server.pollTransmit(), undefined);
  });

  it("Session server nudges after a message with only a DATA frame", () => {
    const pair = opened();
    const id = request(pair, POST, false);
    pair.server.sendHeaders(id, OK, false);
    pair.step("server");
    pair.client.sendData(id, bytes(10), false);
    pair.step("client");
    pair.tick();
    assert.equal(noops(pair.step("server")), 1);
  });

  it("Session server nudges after a message with only a RESET frame", () => {
    const pair = opened();
    const id = request(pair, POST, false);
    pair.tick();
    pair.step("server");
    pair.client.reset(id, ResetCode.Cancel, "");
    pair.step("client");
    pair.tick();
    assert.equal(noops(pair.step("server")), 1);
  });

  it("Session server nudges after a message with only a WINDOW_UPDATE frame", () => {
    const pair = opened({ client: { settings: { initialWindow: 1024 } } });
    const id = request(pair);
    pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(id, bytes(1024), false);
    pair.step("server");
    pair.events("client");
    pair.client.consume(id, 600);
    pair.step("client");
    pair.tick();
    assert.equal(noops(pair.step("server")), 1);
  });

  it("Session server nudges when its only queued data is blocked on the window", () => {
    const pair = opened({ client: { settings: { initialWindow: 1024 } } });
    const id = request(pair, POST, false);
    pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(id, bytes(1024), false);
    pair.step("server");
    pair.client.sendData(id, bytes(10), false);
    pair.step("client");
    pair.server.sendData(id, bytes(10), false); // window is 0: this cannot go out
    pair.tick();
    const sent = pair.step("server");
    assert.equal(noops(sent), 1);
    assert.equal(dataBytes(framesOf(sent)), 0);
  });

  it("Session does not nudge for connection frames (PING, NOOP)", () => {
    const pair = opened();
    pair.inject("server", [frame(FrameType.Noop, 0, new Uint8Array(0))]);
    assert.equal(pair.server.pollTimeout(), undefined);
    pair.inject("server", [frame(FrameType.Ping, 0, encodePing(0, "p"))]);
    pair.tick();
    const sent = pair.step("server")!;
    assert.deepEqual(sent.frames.map((f) => f.type), [FrameType.Pong]);
  });

  it("Session client does not nudge by default, and does with nudge: true", () => {
    for (const nudge of [undefined, true]) {
      const pair = opened({ client: nudge === undefined ? {} : { nudge } });
      pair.server.openStream(GET, true);
      pair.step("server");
      assert.equal(pair.client.pollTimeout(), nudge ? pair.now : undefined);
      pair.tick();
      assert.equal(noops(pair.step("client")), nudge ? 1 : 0);
    }
  });

  it("Session server does not nudge a client whose HELLO says noDelay, and nudges one without", () => {
    for (const noDelay of [true, false]) {
      const pair = new SessionPair({ client: { noDelay } });
      pair.client.hello(null);
      const hello = framesOf(pair.step("client"), FrameType.Hello)[0];
      assert.equal(JSON.parse(text.decode(hello.payload)).noDelay, noDelay || undefined);
      pair.server.accept({ id: "01J00000000000000000000000" });
      pair.step("server");
      assert.deepEqual(framesOf(pair.step("client")).map((f) => f.type), [FrameType.Ack]);
      pair.tick();
      assert.equal(noops(pair.step("server")), noDelay ? 0 : 1, "after the ACK");
      pair.client.openStream(GET, true);
      pair.step("client");
      assert.equal(pair.server.pollTimeout(), noDelay ? undefined : pair.now);
      pair.tick();
      assert.equal(noops(pair.step("server")), noDelay ? 0 : 1, "after a request");
    }
  });

  it("Session server with nudge: false never sends a NOOP", () => {
    const pair = opened({ server: { nudge: false } });
    pair.client.openStream(GET, true);
    pair.step("client");
    assert.equal(pair.server.pollTimeout(), undefined);
    pair.tick();
    assert.equal(pair.server.pollTransmit(), undefined);
  });
});

describe("Session peer violations", () => {
  it("Session.handleMessage() closes with CloseCode.ProtocolError on garbage and ignores later input", () => {
    const pair = opened({ server: { heartbeat: HEARTBEAT } });
    pair.inject("server", [requestFrame(1)]);
    pair.events("server");
    pair.injectBytes("server", new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
    assertClosedBy(pair.events("server"), CloseCode.ProtocolError, /Cannot decode frame/);
    assert.equal(pair.server.phase, "closed");
    assert.equal(pair.server.pollTransmit(), undefined, "queued frames are dropped");
    assert.equal(pair.server.pollTimeout(), undefined);
    pair.inject("server", [requestFrame(3), frame(FrameType.Ping, 0, encodePing(0, ""))]);
    pair.injectBytes("server", new Uint8Array([1]));
    pair.setTime(1e6);
    pair.tick();
    assert.deepEqual(pair.events("server"), []);
    assert.equal(pair.server.pollTransmit(), undefined);
  });

  it("Session closes with FrameTooLarge on a frame over its maxFrameBytes", () => {
    const pair = opened({ server: { settings: { maxFrameBytes: MIN_FRAME_BYTES } } });
    const id = request(pair, POST, false);
    pair.inject("server", [frame(FrameType.Data, id, bytes(MIN_FRAME_BYTES + 1))]);
    assertClosedBy(pair.events("server"), CloseCode.FrameTooLarge);
  });

  it("Session handles no frame of a message that turns out malformed", () => {
    const pair = opened();
    const good = encodeRequestHead(GET);
    const message = new Uint8Array(10 + good.byteLength + 3);
    message.set([FrameType.Headers, FLAG_END_STREAM, 0, 0, 0, 1, 0, 0, 0, good.byteLength]);
    message.set(good, 10);
    pair.injectBytes("server", message);
    assert.deepEqual(types(pair.events("server")), ["close"]);
  });

  it("Session closes on a request head that does not decode", () => {
    const pair = opened();
    pair.inject("server", [frame(FrameType.Headers, 1, new Uint8Array([2, 1, 0x20, 1, 0x2f]))]);
    assertClosedBy(pair.events("server"), CloseCode.ProtocolError, /invalid method/);
  });

  const violations: [string, "client" | "server", (pair: SessionPair) => Frame[]][] = [
    ["HEADERS on an id the server would use", "server", () => [requestFrame(2)]],
    ["HEADERS on a client stream id reused", "server", (pair) => {
      const id = request(pair);
      pair.server.sendHeaders(id, OK, true);
      return [requestFrame(id)];
    }],
    ["HEADERS on a client stream id out of order", "server", () => [
      requestFrame(5),
      requestFrame(3),
    ]],
    ["a second request HEADERS on an open stream", "server", (pair) => [
      requestFrame(request(pair, POST, false), POST, false),
    ]],
    ["DATA on a stream never opened", "server", () => [frame(FrameType.Data, 9, bytes(1))]],
    ["DATA after the request ended", "server", (pair) => [
      frame(FrameType.Data, request(pair), bytes(1)),
    ]],
    ["DATA before the response HEADERS", "client", (pair) => [
      frame(FrameType.Data, request(pair), bytes(1)),
    ]],
    ["a second response HEADERS", "client", (pair) => {
      const id = request(pair);
      pair.server.sendHeaders(id, OK, false);
      pair.step("server");
      return [frame(FrameType.Headers, id, encodeResponseHead(OK))];
    }],
    ["HEADERS for a client id the client never used", "client", () => [
      frame(FrameType.Headers, 7, encodeResponseHead(OK)),
    ]],
    ["RESET on a stream never opened", "server", () => [
      frame(FrameType.Reset, 11, encodeReset(ResetCode.Cancel, "")),
    ]],
    ["WINDOW_UPDATE on a stream never opened", "client", () => [
      frame(FrameType.WindowUpdate, 1, encodeWindowUpdate(1)),
    ]],
    ["an unknown frame type", "client", () => [frame(0x7e as FrameType, 0, new Uint8Array(0))]],
  ];
  for (const [label, to, setup] of violations) {
    it(`Session closes with CloseCode.ProtocolError on ${label}`, () => {
      const pair = opened();
      const frames = setup(pair);
      pair.events(to);
      pair.inject(to, frames);
      assertClosedBy(pair.events(to), CloseCode.ProtocolError);
      assert.equal(pair.end(to).phase, "closed");
      const other = to === "client" ? "server" : "client";
      assert.notEqual(pair.end(other).phase, "closed", "only the end that saw it closes");
    });
  }
});

describe("Session local misuse", () => {
  it("Session.hello() throws TypeError on a server and when sent twice", () => {
    const server = new Session({ role: "server" }, 0);
    assert.throws(() => server.hello({}), TypeError);
    const client = new Session({ role: "client" }, 0);
    client.hello({});
    assert.throws(() => client.hello({}), TypeError);
  });

  it("Session.accept() throws TypeError without a HELLO and on a client", () => {
    assert.throws(() => new Session({ role: "server" }, 0).accept({ id: "x" }), TypeError);
    const client = new Session({ role: "client" }, 0);
    client.hello({});
    assert.throws(() => client.accept({ id: "x" }), TypeError);
    const pair = opened();
    assert.throws(() => pair.server.accept({ id: "again" }), TypeError);
  });

  it("Session.openStream() throws TypeError before open and after close", () => {
    const pair = new SessionPair();
    assert.throws(() => pair.client.openStream(GET, true), TypeError);
    assert.equal(pair.client.canOpenStream, false);
    const open = opened();
    open.client.close();
    assert.throws(() => open.client.openStream(GET, true), TypeError);
  });

  it("Session.sendHeaders() throws TypeError on an unknown stream or a started response", () => {
    const pair = opened();
    assert.throws(() => pair.server.sendHeaders(1, OK, true), TypeError);
    const id = request(pair, POST, false);
    pair.server.sendHeaders(id, OK, false);
    assert.throws(() => pair.server.sendHeaders(id, OK, true), TypeError);
    const local = pair.client.openStream(GET, false);
    assert.throws(
      () => pair.client.sendHeaders(local, OK, true),
      TypeError,
      "request already sent",
    );
  });

  it("Session.sendData() throws TypeError before headers, after the end, or on unknown streams", () => {
    const pair = opened();
    assert.throws(() => pair.server.sendData(1, bytes(1), false), TypeError);
    const id = request(pair);
    assert.throws(() => pair.server.sendData(id, bytes(1), false), TypeError, "before headers");
    pair.server.sendHeaders(id, OK, false);
    pair.server.sendData(id, bytes(1), true);
    assert.throws(() => pair.server.sendData(id, bytes(1), false), TypeError, "after end queued");
    const ended = pair.client.openStream(GET, true);
    assert.throws(() => pair.client.sendData(ended, bytes(1), false), TypeError);
  });

  it("Session misuse leaves the session usable", () => {
    const pair = opened();
    assert.throws(() => pair.server.sendHeaders(42, OK, true), TypeError);
    assert.throws(() => pair.client.hello({}), TypeError);
    const id = request(pair);
    pair.server.sendHeaders(id, OK, true);
    pair.step("server");
    assert.equal(ofType(pair.events("client"), "response").length, 1);
  });

  it("Session.close() drops queued frames and later input", () => {
    const pair = opened();
    pair.client.openStream(GET, true);
    pair.client.close();
    assert.equal(pair.client.phase, "closed");
    assert.equal(pair.client.pollTransmit(), undefined);
    assert.equal(pair.client.pollTimeout(), undefined);
    pair.inject("client", [frame(FrameType.Ping, 0, encodePing(0, ""))]);
    assert.deepEqual(pair.events("client"), [], "close() itself makes no event");
  });
});

describe("Session and a stranger's first message", () => {
  const LIMIT = 16 * 1024 + HELLO_OVERHEAD_BYTES;
  const server = (): Session => new Session({ role: "server" }, 0);
  const closeCode = (session: Session): number | false => {
    const event = session.pollEvent();
    return event?.type === "close" && event.code;
  };
  const helloFrame = (payload: Uint8Array): Frame => frame(FrameType.Hello, 0, payload);

  it("Session (server) closes with InvalidMetadata on a HELLO over maxMetadataBytes + overhead, without decoding it", () => {
    const session = server();
    // Not JSON at all: decoding it would close with 4000, so 4004 shows it was never decoded.
    session.handleMessage(encodeFrames([helloFrame(new Uint8Array(LIMIT))]), 0);
    assert.equal(closeCode(session), CloseCode.InvalidMetadata);
  });

  it("Session (server) accepts a HELLO of exactly the limit", () => {
    const session = server();
    // Metadata at its own limit, and the sender's whitespace filling the message to the byte.
    const metadata = "x".repeat(16 * 1024 - 2);
    const text = JSON.stringify({
      version: PROTOCOL_VERSION,
      metadata,
      settings: DEFAULT_SETTINGS,
    });
    const pad = " ".repeat(LIMIT - FRAME_HEADER_BYTES - utf8.encode(text).byteLength);
    const message = encodeFrames([helloFrame(utf8.encode(`{${pad}${text.slice(1)}`))]);
    assert.equal(message.byteLength, LIMIT);
    session.handleMessage(message, 0);
    const event = session.pollEvent();
    assert.equal(event?.type === "hello" && event.metadata, metadata);
  });

  for (
    const [label, frames] of [
      ["a NOOP before the HELLO", [frame(FrameType.Noop, 0, new Uint8Array(0))]],
      ["a PING", [frame(FrameType.Ping, 0, new Uint8Array(8))]],
      ["an oversized PING", [frame(FrameType.Ping, 0, new Uint8Array(LIMIT))]],
      ["a request", [requestFrame(1)]],
    ] as [string, Frame[]][]
  ) {
    it(`Session (server) closes with ProtocolError when the first message is ${label}`, () => {
      const session = server();
      const hello = encodeHello({
        version: PROTOCOL_VERSION,
        metadata: null,
        settings: DEFAULT_SETTINGS,
      });
      session.handleMessage(encodeFrames([...frames, helloFrame(hello)]), 0);
      assert.equal(closeCode(session), CloseCode.ProtocolError);
    });
  }

  it("Session (server) closes with ProtocolError when the HELLO shares its message", () => {
    const session = server();
    const hello = encodeHello({
      version: PROTOCOL_VERSION,
      metadata: null,
      settings: DEFAULT_SETTINGS,
    });
    session.handleMessage(
      encodeFrames([helloFrame(hello), frame(FrameType.Noop, 0, new Uint8Array(0))]),
      0,
    );
    assert.equal(closeCode(session), CloseCode.ProtocolError);
  });

  it("Session (server) closes with ProtocolError on any message while the hello is being answered", () => {
    const pair = new SessionPair();
    pair.client.hello({});
    pair.step("client");
    assert.equal(pair.events("server")[0].type, "hello");
    pair.inject("server", [frame(FrameType.Noop, 0, new Uint8Array(0))]);
    assertClosedBy(pair.events("server"), CloseCode.ProtocolError, /being answered/);
  });

  it("Session (client) closes with ProtocolError when the server's first message is not a lone WELCOME", () => {
    for (
      const frames of [[frame(FrameType.Noop, 0, new Uint8Array(0))], [
        frame(FrameType.Ping, 0, new Uint8Array(8)),
      ]]
    ) {
      const client = new Session({ role: "client" }, 0);
      client.hello({});
      client.pollTransmit();
      client.handleMessage(encodeFrames(frames), 0);
      assert.equal(closeCode(client), CloseCode.ProtocolError);
    }
  });

  it("Session (client) closes with ProtocolError on a first message over MAX_WELCOME_BYTES", () => {
    const client = new Session({ role: "client" }, 0);
    client.hello({});
    client.pollTransmit();
    client.handleMessage(
      encodeFrames([frame(FrameType.Welcome, 0, new Uint8Array(MAX_WELCOME_BYTES))]),
      0,
    );
    assert.equal(closeCode(client), CloseCode.ProtocolError);
  });
});

describe("Session and maxMessageBytes", () => {
  it("Session closes with FrameTooLarge on a message over its maxMessageBytes, before decoding it", () => {
    const maxMessageBytes = MIN_FRAME_BYTES + 10;
    const pair = opened({
      server: { settings: { maxFrameBytes: MIN_FRAME_BYTES, maxMessageBytes } },
    });
    // Garbage that would close with 4000 if it were decoded.
    pair.server.handleMessage(new Uint8Array(maxMessageBytes + 1).fill(0xee), pair.now);
    assertClosedBy(pair.events("server"), CloseCode.FrameTooLarge, /exceeds limit 16394/);
  });

  it("Session accepts a message of exactly its maxMessageBytes", () => {
    const maxMessageBytes = MIN_FRAME_BYTES + 10;
    const pair = opened({
      server: { settings: { maxFrameBytes: MIN_FRAME_BYTES, maxMessageBytes } },
    });
    pair.inject("server", [frame(FrameType.Ping, 0, new Uint8Array(MIN_FRAME_BYTES))]);
    assert.deepEqual(types(pair.events("server")), ["ping"]);
  });
});

describe("Session splitMessages (Deno's client: no messages of 1–64 KiB)", () => {
  const SPLIT: PairOptions = { client: { splitMessages: true } };
  const POST = (i: number): RequestHead => ({ method: "POST", url: `/r/${i}`, headers: [] });

  /** Sends `count` requests with `bodyBytes` each from the client in one go; returns the messages. */
  function burst(pair: SessionPair, count: number, bodyBytes: number): Sent[] {
    for (let i = 0; i < count; i++) {
      const id = pair.client.openStream(POST(i), false);
      pair.client.sendData(id, new Uint8Array(bodyBytes).fill(i), true);
    }
    const sent: Sent[] = [];
    for (let message = pair.step("client"); message; message = pair.step("client")) {
      sent.push(message);
    }
    return sent;
  }

  it("Session cuts 1–64 KiB of client output into messages of at most 1 KiB, bodies intact", () => {
    const pair = opened(SPLIT);
    const sent = burst(pair, 40, 100);
    assert.ok(sent.length > 1, "the burst was split");
    for (const message of sent) assert.ok(message.bytes.byteLength <= 1024);
    const bodies = new Map<number, number[]>();
    const ended = new Set<number>();
    for (const event of ofType(pair.events("server"), "data")) {
      assert.ok(!ended.has(event.streamId), "nothing after END_STREAM");
      bodies.set(event.streamId, [...bodies.get(event.streamId) ?? [], ...event.chunk]);
      if (event.end) ended.add(event.streamId);
    }
    assert.equal(ended.size, 40);
    for (const [i, body] of [...bodies.values()].entries()) {
      assert.deepEqual(body, new Array(100).fill(i));
    }
  });

  it("Session keeps each request's HEADERS and its small body in the same message", () => {
    const pair = opened(SPLIT);
    const sent = burst(pair, 40, 100);
    for (const message of sent) {
      const heads = message.frames.filter((f) => f.type === FrameType.Headers);
      for (const head of heads) {
        const body = message.frames.filter((f) =>
          f.type === FrameType.Data && f.streamId === head.streamId
        );
        assert.equal(body.length, 1, `stream ${head.streamId} has its body beside its head`);
        assert.equal(body[0].flags & FLAG_END_STREAM, FLAG_END_STREAM);
      }
    }
  });

  it("Session cuts a DATA frame that does not fit, END_STREAM on the last piece only", () => {
    const pair = opened(SPLIT);
    const sent = burst(pair, 1, 3000);
    assert.ok(sent.length >= 3);
    for (const message of sent) assert.ok(message.bytes.byteLength <= 1024);
    const data = ofType(pair.events("server"), "data");
    assert.deepEqual(data.map((e) => e.end), data.map((_, i) => i === data.length - 1));
    assert.equal(data.reduce((n, e) => n + e.chunk.byteLength, 0), 3000);
  });

  it("Session leaves messages under 1 KiB and of 64 KiB or more whole", () => {
    const small = opened(SPLIT);
    assert.equal(burst(small, 3, 100).length, 1);
    const large = opened(SPLIT);
    assert.equal(burst(large, 1, 100 * 1024).length, 1);
    const unsplit = opened();
    assert.equal(burst(unsplit, 40, 100).length, 1, "without the option nothing is cut");
  });
});
