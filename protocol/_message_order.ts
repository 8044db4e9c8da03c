/**
 * The order of frames within one outgoing message: each body that starts and ends in the
 * message travels right behind its HEADERS. Internal to {@linkcode Session}'s send path.
 *
 * @module
 */

import { FLAG_END_STREAM, FrameType } from "./frame.ts";

/** What ordering needs of a frame; its payload is not looked at. */
interface FrameHead {
  type: number;
  flags: number;
  streamId: number;
}

/**
 * Moves the DATA of each body that starts and ends in `frames` right behind its HEADERS
 * (control frames come first, so a batch of small requests is all heads, then all bodies),
 * so the receiver can hand over the body whole. Bodies that continue past this message keep
 * their round-robin places. Order within a stream is kept; across streams it is free.
 *
 * @param frames One message's frames, in the order they were taken.
 * @returns The same frames, reordered; `frames` itself if no move is needed.
 */
export function dataAfterHeaders<F extends FrameHead>(frames: readonly F[]): readonly F[] {
  // A lone exchange (HEADERS, DATA) is in order already; skip the bookkeeping.
  if (frames.length < 3) return frames;
  return pairedInOrder(frames) ?? regrouped(frames);
}

/**
 * The common batch of small bodies without a map: every frame before the first DATA is a
 * control frame, and the DATA frames are, in order, one whole body (a single END_STREAM
 * frame) for each HEADERS that leaves its half open. Anything else is `undefined`, and
 * `regrouped` handles it; where both apply they agree.
 */
function pairedInOrder<F extends FrameHead>(frames: readonly F[]): F[] | undefined {
  const count = frames.length;
  let firstData = 0;
  while (firstData < count && frames[firstData].type !== FrameType.Data) firstData++;
  if (firstData === count) return undefined;
  let next = firstData;
  for (let i = 0; i < firstData; i++) {
    const head = frames[i];
    if (head.type !== FrameType.Headers || head.flags & FLAG_END_STREAM) continue;
    const data = frames[next];
    if (
      data === undefined || data.type !== FrameType.Data || data.streamId !== head.streamId ||
      !(data.flags & FLAG_END_STREAM)
    ) {
      return undefined;
    }
    next++;
  }
  if (next !== count) return undefined;
  const ordered: F[] = [];
  next = firstData;
  for (let i = 0; i < firstData; i++) {
    const frame = frames[i];
    ordered.push(frame);
    if (frame.type === FrameType.Headers && !(frame.flags & FLAG_END_STREAM)) {
      ordered.push(frames[next++]);
    }
  }
  return ordered;
}

/** Any layout: group each stream's DATA, then place the whole bodies behind their heads. */
function regrouped<F extends FrameHead>(frames: readonly F[]): readonly F[] {
  const bodies = new Map<number, F[]>();
  for (const frame of frames) {
    if (frame.type === FrameType.Headers) bodies.set(frame.streamId, []);
  }
  if (bodies.size === 0) return frames;
  const whole = new Set<number>();
  for (const frame of frames) {
    const body = frame.type === FrameType.Data ? bodies.get(frame.streamId) : undefined;
    if (!body) continue;
    body.push(frame);
    if (frame.flags & FLAG_END_STREAM) whole.add(frame.streamId);
  }
  if (whole.size === 0) return frames;
  const ordered: F[] = [];
  for (const frame of frames) {
    if (frame.type === FrameType.Data && whole.has(frame.streamId)) continue;
    ordered.push(frame);
    if (frame.type === FrameType.Headers && whole.has(frame.streamId)) {
      ordered.push(...bodies.get(frame.streamId)!);
    }
  }
  return ordered;
}
