/**
 * What a hostile peer can make a `Session` hold, on a fake clock: the connection window
 * (both ends' bookkeeping, and 4007 past it), one chunk per stream per message whatever the
 * framing (a view only when it is most of its message, charged for the message), late DATA
 * that costs credit but is granted back, the ping rate limits (4008), the cap on replies
 * the peer does not read (4013), what `bufferedBytes` counts, and metadata measured before
 * it is parsed (4004).
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CloseCode,
  decodeWindowUpdate,
  DEFAULT_SETTINGS,
  encodeFrames,
  encodeHello,
  encodePing,
  FLAG_END_STREAM,
  type Frame,
  FRAME_HEADER_BYTES,
  FrameType,
  jsonShape,
  MAX_METADATA_VALUES,
  PING_RATE_LIMIT,
  PROTOCOL_VERSION,
  ProtocolError,
  type ResponseHead,
  type SessionEvent,
  TokenBucket,
} from "../protocol/mod.ts";
import { dataFrame, requestFrame } from "./_raw_frames.ts";
import { GET, type PairOptions, SessionPair } from "./_session_pair.ts";

const OK: ResponseHead = { status: 200, statusText: "", headers: [] };
const POST = { method: "POST", url: "/up", headers: [] as [string, string][] };

type EventOf<T extends SessionEvent["type"]> = Extract<SessionEvent, { type: T }>;

function ofType<T extends SessionEvent["type"]>(events: SessionEvent[], type: T): EventOf<T>[] {
  return events.filter((e): e is EventOf<T> => e.type === type);
}

function opened(options: PairOptions = {}): SessionPair {
  const pair = new SessionPair(options);
  pair.handshake();
  return pair;
}

function closeOf(events: SessionEvent[]): EventOf<"close"> {
  const [close] = ofType(events, "close");
  assert.ok(close, `expected a close event in ${events.map((e) => e.type)}`);
  return close;
}

function assertClosedBy(events: SessionEvent[], code: number, message: RegExp): void {
  const close = closeOf(events);
  assert.equal(close.code, code);
  assert.ok(close.error instanceof ProtocolError);
  assert.match(close.error.message, message);
}

/** Opens `count` request streams from the client, with bodies to come; returns their ids. */
function openUploads(pair: SessionPair, count: number): number[] {
  const ids: number[] = [];
  for (let i = 0; i < count; i++) ids.push(2 * i + 1);
  pair.inject("server", ids.map((id) => requestFrame(id, POST, false)));
  assert.equal(ofType(pair.events("server"), "request").length, count);
  return ids;
}

describe("Session connection window", () => {
  it("Session sender stops at the peer's connection window across streams, and WINDOW_UPDATE on stream 0 resumes it", () => {
    const pair = opened({
      client: { settings: { connectionWindow: 100_000, initialWindow: 1024 * 1024 } },
    });
    const ids = [1, 3, 5].map(() => pair.client.openStream(GET, true));
    pair.step("client");
    pair.events("server");
    for (const id of ids) {
      pair.server.sendHeaders(id, OK, false);
      pair.server.sendData(id, new Uint8Array(60_000), true);
    }
    let sent = 0;
    for (let message = pair.step("server"); message; message = pair.step("server")) {
      sent += message.frames.filter((f) => f.type === FrameType.Data)
        .reduce((n, f) => n + f.payload.byteLength, 0);
    }
    assert.equal(sent, 100_000, "exactly the connection window, spread over the streams");
    assert.equal(pair.server.readyFrames, 0, "blocked streams leave the send queue");
    // The client reads what came, and grants the connection more once half its window is read,
    // or, while more than half of it waits unread and the peer has no credit left, once 16 KiB
    // or an eighth of it (here) is: never in crumbs.
    let received = 0;
    const grants: number[] = [];
    for (let round = 0; round < 10 && received < 180_000; round++) {
      for (const event of ofType(pair.events("client"), "data")) {
        received += event.chunk.byteLength;
        pair.client.consume(event.streamId, event.chunk.byteLength);
      }
      const update = pair.step("client");
      for (const frame of update?.frames ?? []) {
        if (frame.streamId === 0) grants.push(decodeWindowUpdate(frame.payload));
      }
      while (pair.step("server"));
    }
    assert.equal(received, 180_000);
    assert.ok(grants.length >= 1 && grants.every((g) => g >= 100_000 / 8), `grants ${grants}`);
  });

  it("Session closes with FlowControlError on DATA past its connection window, whatever the stream windows", () => {
    const pair = opened({ server: { settings: { connectionWindow: 4096 } } });
    const [a, b] = openUploads(pair, 2);
    pair.inject("server", [dataFrame(a, new Uint8Array(3000))]);
    pair.inject("server", [dataFrame(b, new Uint8Array(1096))]);
    assert.equal(pair.server.unreadBytes, 4096);
    pair.inject("server", [dataFrame(b, new Uint8Array(1))]);
    assertClosedBy(pair.events("server"), CloseCode.FlowControlError, /connection window 0/);
  });

  it("Session counts late DATA for a finished stream against the connection window, and grants it straight back", () => {
    const pair = opened({ server: { settings: { connectionWindow: 4096 } } });
    const [id] = openUploads(pair, 1);
    pair.inject("server", [{ ...dataFrame(id, new Uint8Array(10)), flags: FLAG_END_STREAM }]);
    pair.server.sendHeaders(id, OK, true);
    pair.events("server");
    pair.server.consume(id, 10);
    pair.step("server");
    // The stream is finished; DATA for it is ignored but not free.
    pair.inject("server", [dataFrame(id, new Uint8Array(3000))]);
    assert.equal(pair.server.unreadBytes, 0, "late DATA is never handed on");
    const grant = pair.take("server")!.frames.find((f) => f.streamId === 0);
    assert.equal(decodeWindowUpdate(grant!.payload), 3010, "10 read + 3000 ignored, at half");
    assert.equal(pair.server.phase, "open");
  });

  it("Session grants back the credit of DATA gathered for a stream reset in the same message", () => {
    const pair = opened({ server: { settings: { connectionWindow: 4096 } } });
    const [id] = openUploads(pair, 1);
    pair.inject("server", [
      dataFrame(id, new Uint8Array(2500)),
      { type: FrameType.Reset, flags: 0, streamId: id, payload: new Uint8Array(4) },
    ]);
    assert.deepEqual(pair.events("server").map((e) => e.type), ["reset"]);
    assert.equal(pair.server.unreadBytes, 0);
    const grant = pair.take("server")!.frames.find((f) => f.streamId === 0);
    assert.equal(decodeWindowUpdate(grant!.payload), 2500);
  });

  it("Session closes with FlowControlError on a connection WINDOW_UPDATE of 0 or past 2^31 − 1", () => {
    for (const increment of [0, 0x7fff_ffff]) {
      const pair = opened();
      const payload = new Uint8Array(4);
      new DataView(payload.buffer).setUint32(0, increment);
      pair.inject("server", [{ type: FrameType.WindowUpdate, flags: 0, streamId: 0, payload }]);
      assertClosedBy(
        pair.events("server"),
        CloseCode.FlowControlError,
        /bad connection window increment/,
      );
    }
  });
});

describe("Session DATA per message", () => {
  it("Session hands a thousand 1-byte frames of a stream on as one copied chunk", () => {
    const pair = opened();
    const [id] = openUploads(pair, 1);
    const frames: Frame[] = [];
    for (let i = 0; i < 1000; i++) frames.push(dataFrame(id, new Uint8Array([i & 0xff])));
    pair.inject("server", frames);
    const data = ofType(pair.events("server"), "data");
    assert.equal(data.length, 1);
    assert.deepEqual([...data[0].chunk], Array.from({ length: 1000 }, (_, i) => i & 0xff));
    assert.ok(data[0].retained >= 1000 && data[0].retained <= 2000, `${data[0].retained}`);
    assert.equal(pair.server.unreadBytes, 1000);
  });

  it("Session copies a small chunk out of a large message, so it keeps nothing else alive", () => {
    const pair = opened();
    const [a, b] = openUploads(pair, 2);
    const message = [dataFrame(a, new Uint8Array([7])), dataFrame(b, new Uint8Array(500_000))];
    pair.inject("server", message);
    const data = ofType(pair.events("server"), "data");
    const small = data.find((e) => e.streamId === a)!;
    const large = data.find((e) => e.streamId === b)!;
    assert.equal(small.chunk.buffer.byteLength, 1, "a copy of its own");
    assert.equal(small.retained, 1);
    assert.equal(large.chunk.byteLength, 500_000);
    const size = 2 * FRAME_HEADER_BYTES + 1 + 500_000;
    assert.equal(large.chunk.buffer.byteLength, size, "a view: most of the message");
    assert.equal(large.retained, size, "charged for the whole message");
  });

  it("Session copies a small chunk out of a message whose slice() is a view (Bun's Buffer)", () => {
    /** Like Node's Buffer: `slice()` returns a view, not a copy. */
    class ViewSlicing extends Uint8Array<ArrayBuffer> {
      override slice(start?: number, end?: number): Uint8Array<ArrayBuffer> {
        return this.subarray(start, end);
      }
    }
    const pair = opened();
    const [a, b] = openUploads(pair, 2);
    const bytes = encodeFrames([
      dataFrame(a, new Uint8Array([7])),
      dataFrame(b, new Uint8Array(500_000)),
    ]);
    const message = new ViewSlicing(new ArrayBuffer(bytes.byteLength));
    message.set(bytes);
    pair.injectBytes("server", message);
    const small = ofType(pair.events("server"), "data").find((e) => e.streamId === a)!;
    assert.equal(small.chunk.buffer.byteLength, 1, "a copy of its own, not a view of the message");
    assert.deepEqual([...small.chunk], [7]);
  });

  it("Session interleaved frames of several streams make one event per stream", () => {
    const pair = opened();
    const ids = openUploads(pair, 3);
    const frames: Frame[] = [];
    for (let round = 0; round < 50; round++) {
      for (const id of ids) frames.push(dataFrame(id, new Uint8Array([round])));
    }
    pair.inject("server", frames);
    const data = ofType(pair.events("server"), "data");
    assert.deepEqual(data.map((e) => [e.streamId, e.chunk.byteLength, e.end]), [
      [ids[0], 50, false],
      [ids[1], 50, false],
      [ids[2], 50, false],
    ]);
  });

  it("Session ends a gathered body at END_STREAM, before the stream's finished event", () => {
    const pair = opened();
    const [id] = openUploads(pair, 1);
    pair.server.sendHeaders(id, OK, true);
    pair.step("server");
    pair.inject("server", [
      dataFrame(id, new Uint8Array(5)),
      { ...dataFrame(id, new Uint8Array(6)), flags: FLAG_END_STREAM },
    ]);
    const events = pair.events("server");
    assert.deepEqual(events.map((e) => e.type), ["data", "finished"]);
    const [data] = ofType(events, "data");
    assert.equal(data.chunk.byteLength, 11);
    assert.equal(data.end, true);
  });
});

describe("Session pings and unread replies", () => {
  const ping: Frame = { type: FrameType.Ping, flags: 0, streamId: 0, payload: encodePing(1, "") };
  /** A ping whose pong echoes 30 KB. */
  const bigPing: Frame = {
    type: FrameType.Ping,
    flags: 0,
    streamId: 0,
    payload: encodePing(1, "x".repeat(30_000)),
  };

  it(`Session closes with RateLimited past ${PING_RATE_LIMIT.burst} pings at once`, () => {
    const pair = opened();
    pair.inject("server", Array.from({ length: PING_RATE_LIMIT.burst }, () => ping));
    assert.equal(pair.server.phase, "open");
    pair.inject("server", [ping]);
    assertClosedBy(pair.events("server"), CloseCode.RateLimited, /Too many pings/);
  });

  it("Session ping limit refills with time", () => {
    const pair = opened({ server: { pingRateLimit: { burst: 2, perSecond: 1 } } });
    pair.inject("server", [ping, ping]);
    pair.setTime(pair.now + 1000);
    pair.inject("server", [ping]);
    assert.equal(pair.server.phase, "open");
    pair.inject("server", [ping]);
    assertClosedBy(pair.events("server"), CloseCode.RateLimited, /Too many pings/);
  });

  it("Session takes pings from a shared bucket too: two sessions share one address's rate", () => {
    const shared = new TokenBucket({ burst: 3, perSecond: 0 }, 0);
    const first = opened({ server: { sharedPingLimit: shared } });
    const second = opened({ server: { sharedPingLimit: shared } });
    first.inject("server", [ping, ping]);
    second.inject("server", [ping]);
    assert.equal(second.server.phase, "open");
    second.inject("server", [ping]);
    assertClosedBy(second.events("server"), CloseCode.RateLimited, /Too many pings/);
    assert.equal(first.server.phase, "open");
  });

  it("Session closes with EnhanceYourCalm when the replies it has not sent pass the cap", () => {
    const pair = opened({ server: { maxUnreadReplyBytes: 100_000 } });
    // Pongs echo their ping's data; nobody takes the server's output (the peer is not reading).
    pair.inject("server", [bigPing, bigPing, bigPing]);
    assert.equal(pair.server.phase, "open");
    assert.ok(pair.server.bufferedBytes > 90_000, "the pongs wait in the session");
    pair.inject("server", [bigPing]);
    assertClosedBy(pair.events("server"), CloseCode.EnhanceYourCalm, /not reading/);
    assert.equal(pair.server.bufferedBytes, 0, "closing drops what waited");
  });

  it("Session forgets unread replies once the layer above takes them", () => {
    const pair = opened({ server: { maxUnreadReplyBytes: 100_000 } });
    for (let i = 0; i < 10; i++) {
      pair.inject("server", [bigPing, bigPing]);
      pair.take("server");
    }
    assert.equal(pair.server.phase, "open");
  });
});

describe("Session.bufferedBytes and unreadBytes", () => {
  it("Session.bufferedBytes counts outboxes and queued frames until they are taken", () => {
    const pair = opened();
    const [id] = openUploads(pair, 1);
    pair.server.sendHeaders(id, OK, false);
    const head = pair.server.bufferedBytes;
    assert.ok(head > FRAME_HEADER_BYTES, "the queued HEADERS");
    pair.server.sendData(id, new Uint8Array(5000), false);
    assert.equal(pair.server.bufferedBytes, head + 5000);
    pair.take("server");
    assert.equal(pair.server.bufferedBytes, 0);
  });

  it("Session.unreadBytes counts DATA handed on until consumed", () => {
    const pair = opened();
    const [id] = openUploads(pair, 1);
    pair.inject("server", [dataFrame(id, new Uint8Array(700))]);
    assert.equal(pair.server.unreadBytes, 700);
    pair.server.consume(id, 300);
    assert.equal(pair.server.unreadBytes, 400);
  });
});

describe("Session metadata shape", () => {
  it("jsonShape() counts depth and values without parsing, skipping strings", () => {
    const shape = (text: string) => jsonShape(new TextEncoder().encode(text));
    // {, "a", [, 1, 2, {, "b", null, "c", "[{,}]"
    assert.deepEqual(shape('{"a":[1,2,{"b":null}],"c":"[{,}]"}'), { depth: 3, values: 10 });
    assert.deepEqual(shape("[[],[],[]]"), { depth: 2, values: 4 });
    assert.deepEqual(shape('"x"'), { depth: 0, values: 1 });
    assert.deepEqual(shape(" -1.5e3 "), { depth: 0, values: 1 });
  });

  it(`Session closes with InvalidMetadata on metadata of more than ${MAX_METADATA_VALUES} values, before parsing it`, () => {
    // 16 KiB of `[],`: within maxMetadataBytes, but ~5,000 arrays once parsed.
    const metadata = `[${"[],".repeat(5000)}[]]`;
    const text = `{"version":${PROTOCOL_VERSION},"metadata":${metadata},"settings":${
      JSON.stringify(DEFAULT_SETTINGS)
    }}`;
    const pair = new SessionPair({ server: { maxMetadataBytes: 16 * 1024 } });
    pair.inject("server", [{
      type: FrameType.Hello,
      flags: 0,
      streamId: 0,
      payload: new TextEncoder().encode(text),
    }]);
    assertClosedBy(pair.events("server"), CloseCode.InvalidMetadata, /more than 1024 JSON values/);
  });

  it("Session accepts metadata of maxMetadataValues values, and says what it costs", () => {
    const pair = new SessionPair({ server: { maxMetadataValues: 10 } });
    const metadata = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    pair.inject("server", [{
      type: FrameType.Hello,
      flags: 0,
      streamId: 0,
      payload: encodeHello({ version: PROTOCOL_VERSION, metadata, settings: DEFAULT_SETTINGS }),
    }]);
    const [hello] = ofType(pair.events("server"), "hello");
    assert.deepEqual(hello.metadata, metadata);
    assert.ok(hello.metadataCost >= 2 * JSON.stringify(metadata).length + 64 * 10);
  });
});
