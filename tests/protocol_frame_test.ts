import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CloseCode,
  decodeFrames,
  encodeFrames,
  FLAG_END_STREAM,
  type Frame,
  FRAME_HEADER_BYTES,
  FrameType,
  MAX_STREAM_ID,
  ProtocolError,
} from "../protocol/mod.ts";
import { concatBytes } from "./_raw_frames.ts";

const LIMIT = 1024 * 1024;
const STREAM_TYPES: ReadonlySet<number> = new Set([
  FrameType.Headers,
  FrameType.Data,
  FrameType.Reset,
  FrameType.WindowUpdate,
]);

/** A payload length that each frame type accepts. */
const VALID_LENGTH: Record<FrameType, number> = {
  [FrameType.Hello]: 2,
  [FrameType.Welcome]: 2,
  [FrameType.Ack]: 0,
  [FrameType.Headers]: 5,
  [FrameType.Data]: 7,
  [FrameType.Reset]: 6,
  [FrameType.WindowUpdate]: 4,
  [FrameType.Ping]: 8,
  [FrameType.Pong]: 11,
  [FrameType.GoAway]: 9,
  [FrameType.Noop]: 0,
};

function bytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

function frameOf(type: FrameType, flags = 0, payloadLength = VALID_LENGTH[type]): Frame {
  return {
    type,
    flags,
    streamId: STREAM_TYPES.has(type) ? 7 : 0,
    payload: bytes(payloadLength, type),
  };
}

/** A raw frame header, for input that encodeFrames would never produce. */
function header(type: number, flags: number, streamId: number, length: number): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES);
  const view = new DataView(out.buffer);
  view.setUint8(0, type);
  view.setUint8(1, flags);
  view.setUint32(2, streamId);
  view.setUint32(6, length);
  return out;
}

function assertProtocolError(
  fn: () => unknown,
  code: number,
  message?: RegExp,
): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected ProtocolError, got ${error}`);
    assert.equal(error.name, "ProtocolError");
    assert.equal(error.code, code);
    if (message) assert.match(error.message, message);
    return true;
  });
}

function plain(frame: Frame): { type: number; flags: number; streamId: number; payload: number[] } {
  return { ...frame, payload: [...frame.payload] };
}

describe("encodeFrames() and decodeFrames()", () => {
  for (const [name, type] of Object.entries(FrameType)) {
    it(`round-trips a ${name} frame`, () => {
      const frame = frameOf(type);
      const decoded = decodeFrames(encodeFrames([frame]), LIMIT);
      assert.equal(decoded.length, 1);
      assert.deepEqual(plain(decoded[0]), plain(frame));
    });
  }

  it("encodeFrames() lays out the 10-byte header big-endian", () => {
    const encoded = encodeFrames([{
      type: FrameType.Data,
      flags: FLAG_END_STREAM,
      streamId: 0x01020304,
      payload: new Uint8Array([0xaa, 0xbb]),
    }]);
    assert.deepEqual(
      [...encoded],
      [0x11, 0x01, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x02, 0xaa, 0xbb],
    );
  });

  it("encodeFrames() writes a message that fits into the scratch buffer, as a view of it", () => {
    const scratch = new Uint8Array(64).fill(0xee);
    const frames = [frameOf(FrameType.Data), frameOf(FrameType.Ping)];
    const encoded = encodeFrames(frames, scratch);
    assert.equal(encoded.buffer, scratch.buffer);
    assert.equal(encoded.byteOffset, 0);
    assert.deepEqual([...encoded], [...encodeFrames(frames)]);
    assert.equal(scratch[encoded.byteLength], 0xee, "nothing past the message is written");
  });

  it("encodeFrames() allocates for a message larger than the scratch buffer", () => {
    const scratch = new Uint8Array(FRAME_HEADER_BYTES);
    const frame = frameOf(FrameType.Data);
    const encoded = encodeFrames([frame], scratch);
    assert.notEqual(encoded.buffer, scratch.buffer);
    assert.deepEqual([...encoded], [...encodeFrames([frame])]);
    assert.deepEqual([...scratch], new Array(FRAME_HEADER_BYTES).fill(0));
  });

  it("encodeFrames() writes into a scratch view at its own offset", () => {
    const backing = new Uint8Array(100);
    const scratch = backing.subarray(30);
    const frame = frameOf(FrameType.Noop);
    const encoded = encodeFrames([frame], scratch);
    assert.equal(encoded.byteOffset, 30);
    assert.deepEqual(plain(decodeFrames(encoded, LIMIT)[0]), plain(frame));
    assert.deepEqual([...backing.subarray(0, 30)], new Array(30).fill(0));
  });

  it("encodeFrames() starts a message so that no large payload lands 1–31 bytes past its source within a page", () => {
    // Copies at that distance run 15× slower on x86 (see messageStart in protocol/frame.ts).
    const source = new Uint8Array(1 << 20);
    for (let i = 0; i < source.length; i++) source[i] = (i * 7) & 0xff;
    const scratch = new Uint8Array(512 * 1024);
    for (
      const [sourceOffset, headBytes] of [0, 10, 22, 40, 100, 4086, 4095].flatMap((
        o,
      ) => [[o, -1], [o, 37]])
    ) {
      for (let count = 1; count <= 4; count++) {
        const frames: Frame[] = headBytes < 0 ? [] : [{
          type: FrameType.Headers,
          flags: 0,
          streamId: 1,
          payload: new Uint8Array(headBytes).fill(3),
        }];
        for (let i = 0; i < count; i++) {
          const at = sourceOffset + i * 65_536;
          frames.push({
            type: FrameType.Data,
            flags: i === count - 1 ? FLAG_END_STREAM : 0,
            streamId: 1,
            payload: source.subarray(at, at + 65_536),
          });
        }
        const encoded = encodeFrames(frames, scratch);
        assert.equal(encoded.buffer, scratch.buffer);
        assert.deepEqual(decodeFrames(encoded, LIMIT).map(plain), frames.map(plain));
        let position = encoded.byteOffset;
        for (const frame of frames) {
          position += FRAME_HEADER_BYTES;
          const ahead = (position - frame.payload.byteOffset) & 4095;
          if (frame.payload.byteLength >= 4096) {
            assert.ok(
              ahead === 0 || ahead > 31,
              `offset ${sourceOffset}, ${count} frames: ${ahead}`,
            );
          }
          position += frame.payload.byteLength;
        }
      }
    }
  });

  it("encodeFrames() starts at the scratch buffer's beginning when a later start would not fit", () => {
    const source = new Uint8Array(8192).fill(5);
    const frame = { type: FrameType.Data, flags: 0, streamId: 1, payload: source };
    const scratch = new Uint8Array(FRAME_HEADER_BYTES + source.byteLength);
    const encoded = encodeFrames([frame], scratch);
    assert.equal(encoded.buffer, scratch.buffer);
    assert.equal(encoded.byteOffset, 0);
    assert.deepEqual(plain(decodeFrames(encoded, LIMIT)[0]), plain(frame));
  });

  it("encodeFrames() of no frames is an empty message", () => {
    assert.equal(encodeFrames([]).byteLength, 0);
  });

  it("round-trips FLAG_END_STREAM on HEADERS and DATA", () => {
    const frames = [frameOf(FrameType.Headers, FLAG_END_STREAM), frameOf(FrameType.Data, 1)];
    const decoded = decodeFrames(encodeFrames(frames), LIMIT);
    assert.deepEqual(decoded.map((f) => f.flags), [FLAG_END_STREAM, FLAG_END_STREAM]);
  });

  it("round-trips several frames of every type in one message, in order", () => {
    const frames: Frame[] = Object.values(FrameType).map((type) => frameOf(type));
    frames.push({ ...frameOf(FrameType.Data, FLAG_END_STREAM), streamId: MAX_STREAM_ID });
    const encoded = encodeFrames(frames);
    assert.equal(
      encoded.byteLength,
      frames.reduce((n, f) => n + FRAME_HEADER_BYTES + f.payload.byteLength, 0),
    );
    assert.deepEqual(decodeFrames(encoded, LIMIT).map(plain), frames.map(plain));
  });

  it("round-trips zero-length payloads on HEADERS, DATA, ACK and NOOP", () => {
    const frames: Frame[] = [
      { type: FrameType.Headers, flags: 0, streamId: 1, payload: new Uint8Array(0) },
      { type: FrameType.Data, flags: FLAG_END_STREAM, streamId: 1, payload: new Uint8Array(0) },
      { type: FrameType.Ack, flags: 0, streamId: 0, payload: new Uint8Array(0) },
      { type: FrameType.Noop, flags: 0, streamId: 0, payload: new Uint8Array(0) },
    ];
    const encoded = encodeFrames(frames);
    assert.equal(encoded.byteLength, 4 * FRAME_HEADER_BYTES);
    const decoded = decodeFrames(encoded, LIMIT);
    assert.deepEqual(decoded.map(plain), frames.map(plain));
    for (const frame of decoded) assert.equal(frame.payload.byteLength, 0);
  });

  it("decodeFrames() returns payloads that are views into the message, not copies", () => {
    const encoded = encodeFrames([frameOf(FrameType.Data), frameOf(FrameType.Ping)]);
    const [data, ping] = decodeFrames(encoded, LIMIT);
    assert.equal(data.payload.buffer, encoded.buffer);
    assert.equal(ping.payload.buffer, encoded.buffer);
    assert.equal(data.payload.byteOffset, FRAME_HEADER_BYTES);
    encoded[FRAME_HEADER_BYTES] ^= 0xff;
    assert.equal(data.payload[0], encoded[FRAME_HEADER_BYTES]);
  });

  it("decodeFrames() reads a message that is itself a view at an offset", () => {
    const frame = frameOf(FrameType.Data);
    const encoded = encodeFrames([frame]);
    const backing = new Uint8Array(encoded.byteLength + 13);
    backing.set(encoded, 5);
    const view = backing.subarray(5, 5 + encoded.byteLength);
    const [decoded] = decodeFrames(view, LIMIT);
    assert.deepEqual(plain(decoded), plain(frame));
    assert.equal(decoded.payload.buffer, backing.buffer);
  });

  it("decodeFrames() accepts a payload of exactly maxFrameBytes", () => {
    const frame = frameOf(FrameType.Data, 0, 100);
    assert.equal(decodeFrames(encodeFrames([frame]), 100)[0].payload.byteLength, 100);
  });
});

describe("decodeFrames() rejects malformed input with ProtocolError", () => {
  it("rejects an empty message", () => {
    assertProtocolError(
      () => decodeFrames(new Uint8Array(0), LIMIT),
      CloseCode.ProtocolError,
      /empty/,
    );
  });

  for (let n = 1; n < FRAME_HEADER_BYTES; n++) {
    it(`rejects a truncated header of ${n} bytes`, () => {
      const partial = header(FrameType.Noop, 0, 0, 0).subarray(0, n);
      assertProtocolError(() => decodeFrames(partial, LIMIT), CloseCode.ProtocolError, /header/);
    });
  }

  it("rejects a truncated header after a valid frame", () => {
    const message = concatBytes([encodeFrames([frameOf(FrameType.Noop)]), new Uint8Array(3)]);
    assertProtocolError(
      () => decodeFrames(message, LIMIT),
      CloseCode.ProtocolError,
      /3 bytes left/,
    );
  });

  it("rejects a payload length past the end of the message", () => {
    const message = concatBytes([header(FrameType.Data, 0, 1, 5), new Uint8Array(4)]);
    assertProtocolError(() => decodeFrames(message, LIMIT), CloseCode.ProtocolError, /exceeds/);
  });

  it("rejects a payload length past the end in the second frame", () => {
    const message = concatBytes([
      encodeFrames([frameOf(FrameType.Data)]),
      header(FrameType.Data, 0, 1, 100),
      new Uint8Array(99),
    ]);
    assertProtocolError(() => decodeFrames(message, LIMIT), CloseCode.ProtocolError);
  });

  const known = new Set<number>(Object.values(FrameType));
  for (let type = 0; type <= 0xff; type++) {
    if (known.has(type)) continue;
    it(`rejects unknown type 0x${type.toString(16)}`, () => {
      assertProtocolError(
        () => decodeFrames(header(type, 0, 0, 0), LIMIT),
        CloseCode.ProtocolError,
        /unknown type/,
      );
    });
  }

  for (const [name, type] of Object.entries(FrameType)) {
    const allowed = type === FrameType.Headers || type === FrameType.Data ? FLAG_END_STREAM : 0;
    for (const flags of [0x01, 0x02, 0x04, 0x80, 0x03, 0xff]) {
      if ((flags & ~allowed) === 0) continue;
      it(`rejects unknown flags 0x${flags.toString(16)} on ${name}`, () => {
        const message = encodeFrames([frameOf(type, flags)]);
        assertProtocolError(
          () => decodeFrames(message, LIMIT),
          CloseCode.ProtocolError,
          /unknown flags/,
        );
      });
    }
  }

  it("accepts WINDOW_UPDATE on stream 0 (the connection's credit) and on any stream", () => {
    for (const streamId of [0, 1, 2, MAX_STREAM_ID]) {
      const frame = { ...frameOf(FrameType.WindowUpdate), streamId };
      assert.deepEqual(decodeFrames(encodeFrames([frame]), LIMIT), [frame]);
    }
  });

  for (const [name, type] of Object.entries(FrameType)) {
    if (type === FrameType.WindowUpdate) continue;
    if (STREAM_TYPES.has(type)) {
      it(`rejects ${name} on stream 0`, () => {
        const message = encodeFrames([{ ...frameOf(type), streamId: 0 }]);
        assertProtocolError(
          () => decodeFrames(message, LIMIT),
          CloseCode.ProtocolError,
          /needs a stream id/,
        );
      });
    } else {
      for (const streamId of [1, 2, MAX_STREAM_ID]) {
        it(`rejects ${name} on stream ${streamId}`, () => {
          const message = encodeFrames([{ ...frameOf(type), streamId }]);
          assertProtocolError(
            () => decodeFrames(message, LIMIT),
            CloseCode.ProtocolError,
            /must use stream 0/,
          );
        });
      }
    }
  }

  const badLengths: [string, FrameType, number][] = [
    ["RESET", FrameType.Reset, 3],
    ["RESET", FrameType.Reset, 0],
    ["WINDOW_UPDATE", FrameType.WindowUpdate, 3],
    ["WINDOW_UPDATE", FrameType.WindowUpdate, 5],
    ["WINDOW_UPDATE", FrameType.WindowUpdate, 0],
    ["PING", FrameType.Ping, 7],
    ["PONG", FrameType.Pong, 0],
    ["GOAWAY", FrameType.GoAway, 7],
    ["HELLO", FrameType.Hello, 1],
    ["WELCOME", FrameType.Welcome, 0],
    ["ACK", FrameType.Ack, 1],
    ["NOOP", FrameType.Noop, 1],
  ];
  for (const [name, type, length] of badLengths) {
    it(`rejects ${name} with a payload of ${length} bytes`, () => {
      const message = encodeFrames([frameOf(type, 0, length)]);
      assertProtocolError(
        () => decodeFrames(message, LIMIT),
        CloseCode.ProtocolError,
        /bad length/,
      );
    });
  }

  it("rejects a length over maxFrameBytes with CloseCode.FrameTooLarge", () => {
    const message = encodeFrames([frameOf(FrameType.Data, 0, 101)]);
    assertProtocolError(() => decodeFrames(message, 100), CloseCode.FrameTooLarge, /limit 100/);
  });

  it("rejects a huge declared length with CloseCode.FrameTooLarge before reading the payload", () => {
    const message = header(FrameType.Data, 0, 1, 0xffff_ffff);
    assertProtocolError(() => decodeFrames(message, LIMIT), CloseCode.FrameTooLarge);
  });

  it("rejects the whole message when a later frame is malformed", () => {
    const message = concatBytes([encodeFrames([frameOf(FrameType.Ping)]), header(0x7e, 0, 0, 0)]);
    assertProtocolError(() => decodeFrames(message, LIMIT), CloseCode.ProtocolError);
  });
});
