/**
 * `dataAfterHeaders`, the send path's reordering of one message's frames: examples of each
 * layout, and a seeded property test against a plain statement of the rule, over messages
 * laid out as the sender takes them and randomly interleaved ones (which mostly take the
 * general path).
 *
 * @module
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { FLAG_END_STREAM, type Frame, FrameType } from "../protocol/mod.ts";
import { dataAfterHeaders } from "../protocol/_message_order.ts";
import { caseSeed, Rng } from "./_fuzz.ts";
import { dataFrame, requestFrame, windowUpdateFrame } from "./_raw_frames.ts";

const SEED = 0x0de4_0bad;
const CASES = 2000;

const HEAD = { method: "POST", url: "/", headers: [] };

function headers(streamId: number, end = false): Frame {
  return requestFrame(streamId, HEAD, end);
}

function data(streamId: number, end = false, size = 1): Frame {
  return dataFrame(streamId, new Uint8Array(size), end);
}

function windowUpdate(streamId: number): Frame {
  return windowUpdateFrame(streamId, 1);
}

/** The rule, stated plainly: a body whose HEADERS and END_STREAM are both here moves behind its head. */
function expected(frames: readonly Frame[]): Frame[] {
  const heads = new Set(frames.filter((f) => f.type === FrameType.Headers).map((f) => f.streamId));
  const whole = new Set(
    frames.filter((f) =>
      f.type === FrameType.Data && f.flags & FLAG_END_STREAM && heads.has(f.streamId)
    )
      .map((f) => f.streamId),
  );
  const out: Frame[] = [];
  for (const frame of frames) {
    if (frame.type === FrameType.Data && whole.has(frame.streamId)) continue;
    out.push(frame);
    if (frame.type === FrameType.Headers && whole.has(frame.streamId)) {
      out.push(...frames.filter((f) => f.type === FrameType.Data && f.streamId === frame.streamId));
    }
  }
  return out;
}

/** Asserts that `dataAfterHeaders` returns `frames` in the order of these indices. */
function assertOrder(frames: readonly Frame[], order: readonly number[]): void {
  assert.deepEqual(dataAfterHeaders(frames), order.map((i) => frames[i]));
}

/** A message as `pollTransmit` takes it: control frames, then DATA in round-robin turns. */
function takenMessage(rng: Rng): Frame[] {
  const control: Frame[] = [];
  const turns: Frame[][] = [];
  const streams = 1 + rng.int(12);
  for (let s = 0; s < streams; s++) {
    const id = 1 + 2 * s;
    const opens = rng.chance(0.7);
    const bodyless = opens && rng.chance(0.2);
    if (opens) control.push(headers(id, bodyless));
    if (rng.chance(0.1)) control.push(windowUpdate(id));
    if (bodyless) continue;
    // Body chunks here: none (it comes later), some, or all of it (END_STREAM on the last).
    const chunks = rng.pick([0, 1, 1, 1, 2, 3]);
    const ends = chunks > 0 && rng.chance(0.7);
    for (let c = 0; c < chunks; c++) {
      (turns[c] ??= []).push(data(id, ends && c === chunks - 1, 1 + rng.int(5)));
    }
  }
  return [...control, ...turns.flat()];
}

/**
 * The frames in a random interleaving that keeps each stream's own order (the sender never
 * puts a stream's DATA before its HEADERS, or its chunks out of order): the general path.
 */
function interleaved(rng: Rng, frames: readonly Frame[]): Frame[] {
  const byStream = new Map<number, Frame[]>();
  for (const frame of frames) {
    let list = byStream.get(frame.streamId);
    if (!list) byStream.set(frame.streamId, list = []);
    list.push(frame);
  }
  const lists = [...byStream.values()];
  const out: Frame[] = [];
  while (lists.length > 0) {
    const i = rng.int(lists.length);
    out.push(lists[i].shift()!);
    if (lists[i].length === 0) lists.splice(i, 1);
  }
  return out;
}

describe("dataAfterHeaders", () => {
  it("puts each small body behind its head in a batch of heads then bodies", () => {
    const frames = [headers(1), headers(3), headers(5, true), data(1, true), data(3, true)];
    assertOrder(frames, [0, 3, 1, 4, 2]);
  });

  it("leaves a body that continues past the message in its round-robin place", () => {
    const frames = [headers(1), headers(3), data(1), data(3, true), data(1)];
    assertOrder(frames, [0, 1, 3, 2, 4]);
  });

  it("moves a whole body of several frames, in order", () => {
    const frames = [headers(1), headers(3), data(1), data(3, true), data(1, true)];
    assertOrder(frames, [0, 2, 4, 1, 3]);
  });

  it("keeps DATA of streams opened in earlier messages where they are", () => {
    const frames = [windowUpdate(7), headers(1), data(7), data(1, true), data(9, true)];
    assertOrder(frames, [0, 1, 3, 2, 4]);
  });

  it("returns the frames themselves when nothing moves", () => {
    const short = [headers(1), data(1, true)];
    assert.equal(dataAfterHeaders(short), short);
    const noHeads = [data(1), data(3), data(1, true)];
    assert.equal(dataAfterHeaders(noHeads), noHeads);
    const noWholeBody = [headers(1), headers(3), data(1), data(3)];
    assert.equal(dataAfterHeaders(noWholeBody), noWholeBody);
  });

  it(`agrees with the rule on ${CASES} taken and ${CASES} interleaved messages (seed ${SEED})`, () => {
    for (let n = 0; n < CASES; n++) {
      const rng = new Rng(caseSeed(SEED, n));
      for (const frames of [takenMessage(rng), interleaved(rng, takenMessage(rng))]) {
        const result = dataAfterHeaders(frames);
        assert.deepEqual(result, expected(frames), `case ${n}`);
        // The same frame objects, each once: a reorder, never a copy or a loss.
        assert.deepEqual(new Set(result), new Set(frames), `case ${n}`);
        assert.equal(result.length, frames.length, `case ${n}`);
      }
    }
  });
});
