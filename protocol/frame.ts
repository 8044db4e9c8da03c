/**
 * The frame codec: frames to bytes and back.
 *
 * Every WebSocket message is a binary message holding one or more frames back
 * to back, so that frames queued in the same tick cost one message. A frame is a
 * 10-byte header followed by its payload:
 *
 * ```
 * type: u8 | flags: u8 | stream id: u32 BE | payload length: u32 BE | payload
 * ```
 *
 * Decoding checks the header only (type, flags, stream id, length, fixed payload
 * sizes); what a payload means is checked by the session. Decoded payloads are
 * views into the message, not copies. Encoding takes a payload whole or in parts, so a
 * body queued in several chunks leaves as one frame without being copied twice.
 *
 * @module
 */

import { readUint32, writeUint32 } from "./_bytes.ts";
import { CloseCode } from "./close_codes.ts";
import { ProtocolError } from "./errors.ts";

/** Frame types. Values are fixed by PROTOCOL.md. */
export const FrameType = {
  /** Client → server, stream 0: protocol version, metadata and settings (JSON). */
  Hello: 0x01,
  /** Server → client, stream 0: connection id and settings (JSON). */
  Welcome: 0x02,
  /** Client → server, stream 0: the handshake's third step (empty). */
  Ack: 0x03,
  /** Opens a stream with a request head, or answers it with a response head. */
  Headers: 0x10,
  /** A chunk of a body. */
  Data: 0x11,
  /** Ends a stream early, with a reset code and a reason. */
  Reset: 0x12,
  /** Grants the peer more send credit on one stream, or (stream 0) on the connection. */
  WindowUpdate: 0x13,
  /** Heartbeat request: send time and application data. */
  Ping: 0x20,
  /** Heartbeat answer: echoes the ping's send time, with application data. */
  Pong: 0x21,
  /** No new streams past the given id; in-flight ones may finish. */
  GoAway: 0x30,
  /** Means nothing; gives the peer's TCP stack a segment to carry its ACK. */
  Noop: 0x3f,
} as const;

/** A frame type from {@linkcode FrameType}. */
export type FrameType = typeof FrameType[keyof typeof FrameType];

/** Flag on HEADERS and DATA: the sender's half of the stream ends with this frame. */
export const FLAG_END_STREAM = 0x01;

/** Size of a frame header in bytes. */
export const FRAME_HEADER_BYTES = 10;

/** Largest stream id. */
export const MAX_STREAM_ID = 0xffff_ffff;

/** One frame: the unit of the protocol. */
export interface Frame {
  /** What the frame is. */
  type: FrameType;
  /** Flag bits; only {@linkcode FLAG_END_STREAM} is defined. */
  flags: number;
  /** The stream the frame belongs to; 0 for connection-level frames. */
  streamId: number;
  /** The payload. */
  payload: Uint8Array;
}

/**
 * A frame to encode: a {@linkcode Frame} whose payload may also be given in parts, which
 * are written back to back as one payload.
 */
export interface OutgoingFrame {
  /** What the frame is. */
  type: FrameType;
  /** Flag bits; only {@linkcode FLAG_END_STREAM} is defined. */
  flags: number;
  /** The stream the frame belongs to; 0 for connection-level frames. */
  streamId: number;
  /** The payload, whole or in parts. */
  payload: Uint8Array | readonly Uint8Array[];
}

/**
 * The length of a payload given whole or in parts.
 *
 * @example Usage
 * ```ts
 * import { payloadLength } from "@swaggersocket/swaggersocket/protocol";
 * payloadLength([new Uint8Array(3), new Uint8Array(4)]); // 7
 * ```
 *
 * @param payload The payload.
 * @returns Its length in bytes.
 */
export function payloadLength(payload: Uint8Array | readonly Uint8Array[]): number {
  if (payload instanceof Uint8Array) return payload.byteLength;
  let length = 0;
  for (const part of payload) length += part.byteLength;
  return length;
}

/** Frames that must name a stream; WINDOW_UPDATE may name one or, for the connection, 0. */
const STREAM_FRAMES: ReadonlySet<number> = new Set([
  FrameType.Headers,
  FrameType.Data,
  FrameType.Reset,
]);
const KNOWN_TYPES: ReadonlySet<number> = new Set(Object.values(FrameType));
const EMPTY = new Uint8Array(0);

/**
 * Encodes frames into one message.
 *
 * With `scratch`, a message that fits is written into it and the result is a view of
 * it, valid until `scratch` is written again. A message carrying large payloads may start a
 * little way into `scratch` (see `messageStart`). A stream of large DATA frames then costs no
 * allocation per message (a fresh buffer each time, its pages faulted in by the copy,
 * then garbage); it suits a sender whose transport copies the bytes before it returns.
 *
 * @example Usage
 * ```ts
 * import { encodeFrames, FrameType } from "@swaggersocket/swaggersocket/protocol";
 * const bytes = encodeFrames([{ type: FrameType.Noop, flags: 0, streamId: 0, payload: new Uint8Array() }]);
 * bytes.byteLength; // 10
 * ```
 *
 * @param frames The frames, in order; a payload may be given in parts.
 * @param scratch A buffer to reuse; a message larger than it gets a buffer of its own.
 * @returns The message bytes.
 */
export function encodeFrames(
  frames: readonly (Frame | OutgoingFrame)[],
  scratch?: Uint8Array,
): Uint8Array {
  let size = 0;
  let large = false;
  for (const frame of frames) {
    const payload = frame.payload;
    if (payload instanceof Uint8Array) {
      size += FRAME_HEADER_BYTES + payload.byteLength;
      if (payload.byteLength >= LARGE_COPY_BYTES) large = true;
    } else {
      size += FRAME_HEADER_BYTES;
      for (const part of payload) {
        size += part.byteLength;
        if (part.byteLength >= LARGE_COPY_BYTES) large = true;
      }
    }
  }
  let out: Uint8Array;
  if (scratch !== undefined && size <= scratch.byteLength) {
    let start = large ? messageStart(frames, scratch.byteOffset) : 0;
    if (start + size > scratch.byteLength) start = 0;
    out = scratch.subarray(start, start + size);
  } else {
    out = new Uint8Array(size);
  }
  let offset = 0;
  for (const frame of frames) {
    const payload = frame.payload;
    out[offset] = frame.type;
    out[offset + 1] = frame.flags;
    writeUint32(out, offset + 2, frame.streamId);
    offset += FRAME_HEADER_BYTES;
    if (payload instanceof Uint8Array) {
      writeUint32(out, offset - 4, payload.byteLength);
      out.set(payload, offset);
      offset += payload.byteLength;
    } else {
      const start = offset;
      for (const part of payload) {
        out.set(part, offset);
        offset += part.byteLength;
      }
      writeUint32(out, start - 4, offset - start);
    }
  }
  return out;
}

/** Payloads this large are copied with the CPU's string move (`rep movsb`); see `messageStart`. */
const LARGE_COPY_BYTES = 4096;
const PAGE_BYTES = 4096;
/** A copy this few bytes (or fewer) ahead of its source, within a page, is the slow case. */
const ALIASED_BYTES = 31;

/**
 * Where in the scratch buffer to start a message so that no large payload is copied to a
 * place 1–31 bytes past its source's, within a 4 KiB page.
 *
 * At such a distance the x86 string move behind `Uint8Array.prototype.set` (V8's and
 * JavaScriptCore's alike) reads back what it has just written and copies at 2 GB/s instead of
 * 30–40 on our AMD EPYC machines (bench/RESULTS.md, session 5). A payload starts 10 bytes
 * into its frame, so a body chunk that begins on a page boundary lands right in that window
 * if the message starts on one too. This assumes the payloads' buffers and the scratch begin
 * alike within a page, as large buffers do; where they do not, any start is as good as another.
 */
function messageStart(frames: readonly (Frame | OutgoingFrame)[], scratchOffset: number): number {
  for (let start = 0; start < PAGE_BYTES; start += ALIASED_BYTES + 1) {
    let position = scratchOffset + start;
    let clear = true;
    for (const frame of frames) {
      position += FRAME_HEADER_BYTES;
      const parts = frame.payload instanceof Uint8Array ? [frame.payload] : frame.payload;
      for (const payload of parts) {
        if (payload.byteLength >= LARGE_COPY_BYTES) {
          const ahead = (position - payload.byteOffset) & (PAGE_BYTES - 1);
          if (ahead >= 1 && ahead <= ALIASED_BYTES) {
            clear = false;
            break;
          }
        }
        position += payload.byteLength;
      }
      if (!clear) break;
    }
    if (clear) return start;
  }
  return 0;
}

/**
 * Decodes a message into frames, checking each header.
 *
 * @example Usage
 * ```ts
 * import { decodeFrames, encodeFrames, FrameType } from "@swaggersocket/swaggersocket/protocol";
 * const bytes = encodeFrames([{ type: FrameType.Noop, flags: 0, streamId: 0, payload: new Uint8Array() }]);
 * decodeFrames(bytes, 1024)[0].type === FrameType.Noop; // true
 * ```
 *
 * @param bytes One message.
 * @param maxFrameBytes The largest payload accepted.
 * @returns The frames; payloads are views into `bytes`.
 * @throws {ProtocolError} If the message is not a valid sequence of frames.
 */
export function decodeFrames(bytes: Uint8Array, maxFrameBytes: number): Frame[] {
  checkFrames(bytes, maxFrameBytes);
  const frames: Frame[] = [];
  for (let offset = 0; offset < bytes.byteLength;) {
    const frame = frameAt(bytes, offset);
    frames.push(frame);
    offset += FRAME_HEADER_BYTES + frame.payload.byteLength;
  }
  return frames;
}

/**
 * Checks the header of every frame in a message, allocating nothing: a receiver calls it
 * before acting on any frame, so that a malformed message takes no effect at all, and a
 * message of millions of tiny frames costs no object per frame.
 *
 * @example Usage
 * ```ts
 * import { checkFrames, encodeFrames, FrameType } from "@swaggersocket/swaggersocket/protocol";
 * const noop = { type: FrameType.Noop, flags: 0, streamId: 0, payload: new Uint8Array() };
 * checkFrames(encodeFrames([noop, noop]), 1024); // 2
 * ```
 *
 * @param bytes One message.
 * @param maxFrameBytes The largest payload accepted.
 * @returns The number of frames.
 * @throws {ProtocolError} If the message is not a valid sequence of frames.
 */
export function checkFrames(bytes: Uint8Array, maxFrameBytes: number): number {
  if (bytes.byteLength === 0) {
    throw new ProtocolError("Cannot decode frame: empty message", CloseCode.ProtocolError);
  }
  let count = 0;
  for (let offset = 0; offset < bytes.byteLength; count++) {
    offset += FRAME_HEADER_BYTES + checkFrameAt(bytes, offset, maxFrameBytes);
  }
  return count;
}

/**
 * Checks the header of the frame at `offset`.
 *
 * @returns Its payload length.
 */
function checkFrameAt(bytes: Uint8Array, offset: number, maxFrameBytes: number): number {
  if (bytes.byteLength - offset < FRAME_HEADER_BYTES) {
    throw new ProtocolError(
      `Cannot decode frame: ${
        bytes.byteLength - offset
      } bytes left, header needs ${FRAME_HEADER_BYTES}`,
      CloseCode.ProtocolError,
    );
  }
  const type = bytes[offset];
  const length = readUint32(bytes, offset + 6);
  if (!KNOWN_TYPES.has(type)) {
    throw new ProtocolError(
      `Cannot decode frame: unknown type 0x${type.toString(16)}`,
      CloseCode.ProtocolError,
    );
  }
  if (length > maxFrameBytes) {
    throw new ProtocolError(
      `Cannot decode frame: length ${length} exceeds limit ${maxFrameBytes}`,
      CloseCode.FrameTooLarge,
    );
  }
  const start = offset + FRAME_HEADER_BYTES;
  if (bytes.byteLength - start < length) {
    throw new ProtocolError(
      `Cannot decode frame: length ${length} exceeds the ${bytes.byteLength - start} bytes left`,
      CloseCode.ProtocolError,
    );
  }
  checkHeader(type as FrameType, bytes[offset + 1], readUint32(bytes, offset + 2), length);
  return length;
}

/**
 * The frame at `offset` of a message that {@linkcode checkFrames} accepted.
 *
 * @example Usage
 * ```ts
 * import { encodeFrames, frameAt, FrameType } from "@swaggersocket/swaggersocket/protocol";
 * const bytes = encodeFrames([{ type: FrameType.Ack, flags: 0, streamId: 0, payload: new Uint8Array() }]);
 * frameAt(bytes, 0).type === FrameType.Ack; // true
 * ```
 *
 * @param bytes The message.
 * @param offset Where the frame's header starts.
 * @returns The frame; its payload is a view into `bytes`.
 */
export function frameAt(bytes: Uint8Array, offset: number): Frame {
  const length = readUint32(bytes, offset + 6);
  const start = offset + FRAME_HEADER_BYTES;
  return {
    type: bytes[offset] as FrameType,
    flags: bytes[offset + 1],
    streamId: readUint32(bytes, offset + 2),
    payload: length === 0 ? EMPTY : bytes.subarray(start, start + length),
  };
}

function checkHeader(type: FrameType, flags: number, streamId: number, length: number): void {
  const onStream = STREAM_FRAMES.has(type);
  if (onStream && streamId === 0) {
    throw new ProtocolError(
      `Cannot decode frame: type 0x${type.toString(16)} needs a stream id`,
      CloseCode.ProtocolError,
    );
  }
  if (!onStream && streamId !== 0 && type !== FrameType.WindowUpdate) {
    throw new ProtocolError(
      `Cannot decode frame: type 0x${type.toString(16)} must use stream 0`,
      CloseCode.ProtocolError,
    );
  }
  const endable = type === FrameType.Headers || type === FrameType.Data;
  if (flags & ~(endable ? FLAG_END_STREAM : 0)) {
    throw new ProtocolError(
      `Cannot decode frame: unknown flags 0x${flags.toString(16)}`,
      CloseCode.ProtocolError,
    );
  }
  const minLength = MIN_PAYLOAD[type] ?? 0;
  const maxLength = MAX_PAYLOAD[type] ?? Infinity;
  if (length < minLength || length > maxLength) {
    throw new ProtocolError(
      `Cannot decode frame: type 0x${type.toString(16)} has bad length ${length}`,
      CloseCode.ProtocolError,
    );
  }
}

const MIN_PAYLOAD: Partial<Record<FrameType, number>> = {
  [FrameType.Reset]: 4,
  [FrameType.WindowUpdate]: 4,
  [FrameType.Ping]: 8,
  [FrameType.Pong]: 8,
  [FrameType.GoAway]: 8,
  [FrameType.Hello]: 2,
  [FrameType.Welcome]: 2,
};

const MAX_PAYLOAD: Partial<Record<FrameType, number>> = {
  [FrameType.WindowUpdate]: 4,
  [FrameType.Ack]: 0,
  [FrameType.Noop]: 0,
};
