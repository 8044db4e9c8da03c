/**
 * Frame-level helpers for raw-peer tests: read a raw WebSocket's messages as frames and
 * wait for the one a test means, and build the frames a hostile or hand-driven peer sends
 * (with the protocol's own encoders, so only the part under test is wrong).
 *
 * @module
 */

import {
  decodeFrames,
  encodeFrames,
  encodeRequestHead,
  encodeReset,
  encodeWindowUpdate,
  FLAG_END_STREAM,
  type Frame,
  FrameType,
  type RequestHead,
} from "../protocol/mod.ts";
import type { RawPeer } from "./_raw_peer.ts";

/** Reads frames from a raw peer, one message at a time, keeping the ones not yet asked for. */
export class FrameReader {
  readonly #peer: RawPeer;
  readonly #frames: Frame[] = [];
  /** Every frame read so far, in order. */
  readonly seen: Frame[] = [];

  constructor(peer: RawPeer) {
    this.#peer = peer;
  }

  /**
   * Waits for the first frame (not yet returned) that matches `predicate`, skipping the
   * others (nudges, pongs, window updates the test does not care about).
   */
  async next(predicate: (frame: Frame) => boolean, ms = 10_000): Promise<Frame> {
    const deadline = Date.now() + ms;
    for (;;) {
      const index = this.#frames.findIndex(predicate);
      if (index !== -1) return this.#frames.splice(index, 1)[0];
      this.#frames.length = 0;
      const message = await this.#peer.nextMessage(Math.max(1, deadline - Date.now()));
      if (typeof message === "string") throw new Error("Expected binary frames, got text");
      const frames = decodeFrames(message, Infinity);
      this.seen.push(...frames);
      this.#frames.push(...frames);
    }
  }
}

/** A HEADERS frame opening stream `streamId` with a request head. */
export function requestFrame(streamId: number, head: RequestHead, end = true): Frame {
  return {
    type: FrameType.Headers,
    flags: end ? FLAG_END_STREAM : 0,
    streamId,
    payload: encodeRequestHead(head),
  };
}

/** A DATA frame. */
export function dataFrame(streamId: number, payload: Uint8Array, end = false): Frame {
  return { type: FrameType.Data, flags: end ? FLAG_END_STREAM : 0, streamId, payload };
}

/** A RESET frame. */
export function resetFrame(streamId: number, code: number, reason = ""): Frame {
  return { type: FrameType.Reset, flags: 0, streamId, payload: encodeReset(code, reason) };
}

/** A WINDOW_UPDATE frame. */
export function windowUpdateFrame(streamId: number, increment: number): Frame {
  return {
    type: FrameType.WindowUpdate,
    flags: 0,
    streamId,
    payload: encodeWindowUpdate(increment),
  };
}

/**
 * One message of `count` one-byte DATA frames on `ids` in turn, the byte values counting up
 * from `start`: built as bytes, since a frame object each would cost more than the attack.
 */
export function tinyFrames(ids: readonly number[], count: number, start = 0): Uint8Array {
  const bytes = new Uint8Array(11 * count);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < count; i++) {
    const at = 11 * i;
    bytes[at] = FrameType.Data;
    view.setUint32(at + 2, ids[i % ids.length]);
    view.setUint32(at + 6, 1);
    bytes[at + 10] = (start + i) & 0xff;
  }
  return bytes;
}

/** Frames as one message. */
export function message(...frames: Frame[]): Uint8Array {
  return encodeFrames(frames);
}

/** Byte arrays laid end to end (frames never span messages, so messages concatenate too). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}
