/**
 * A raw WebSocket peer: the runtime's standard `WebSocket`, talking to a server without
 * the library, so that tests can send whatever bytes they like (garbage included) and
 * see the close code the server answers with.
 *
 * @module
 */

import {
  decodeFrames,
  decodeWelcome,
  DEFAULT_SETTINGS,
  encodeFrames,
  encodeHello,
  type Frame,
  FrameType,
  PROTOCOL_VERSION,
  type Welcome,
} from "../protocol/mod.ts";
import { withTimeout } from "./_helpers.ts";

/** How the raw socket closed. */
export interface RawClose {
  code: number;
  reason: string;
}

/** A connected raw WebSocket. */
export interface RawPeer {
  /** The socket (binary messages arrive as `ArrayBuffer`). */
  readonly ws: WebSocket;
  /** Resolves when the socket is open; rejects if it closes first. */
  readonly opened: Promise<void>;
  /** Resolves with the close event's code and reason. */
  readonly closed: Promise<RawClose>;
  /** The next message received (bytes or text), waiting if none is queued. */
  nextMessage(ms?: number): Promise<Uint8Array | string>;
  /** Sends `hello` (resuming with `resume`, if given), waits for the WELCOME and returns it. */
  handshake(metadata?: unknown, ack?: boolean, resume?: string): Promise<Welcome>;
  /** Closes the socket if still open, and waits for the close event (bounded). */
  close(): Promise<void>;
}

/**
 * Opens a raw WebSocket to `url`.
 *
 * @param url The server's `ws://` URL.
 * @returns The peer; await `opened` before sending.
 */
export function connectRaw(url: string): RawPeer {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const queue: (Uint8Array | string)[] = [];
  const waiters: ((message: Uint8Array | string) => void)[] = [];
  ws.addEventListener("message", (event: MessageEvent) => {
    const data = event.data;
    const message = typeof data === "string" ? data : new Uint8Array(data as ArrayBuffer);
    const waiter = waiters.shift();
    if (waiter) waiter(message);
    else queue.push(message);
  });
  const closed = new Promise<RawClose>((resolve) => {
    ws.addEventListener("close", (event: CloseEvent) => {
      resolve({ code: event.code, reason: event.reason });
    });
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    closed.then((info) => reject(new Error(`Raw WebSocket closed before opening: ${info.code}`)));
  });
  opened.catch(() => {});
  const nextMessage = (ms = 10_000): Promise<Uint8Array | string> => {
    const queued = queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return withTimeout(
      new Promise<Uint8Array | string>((resolve) => waiters.push(resolve)),
      ms,
      "a message on the raw WebSocket",
    );
  };
  return {
    ws,
    opened,
    closed,
    nextMessage,
    async handshake(metadata = { name: "raw" }, ack = true, resume?: string) {
      await opened;
      ws.send(helloMessage(metadata, resume));
      const message = await nextMessage();
      if (typeof message === "string") throw new Error("Expected a binary WELCOME");
      const [frame] = decodeFrames(message, 1 << 20);
      if (frame?.type !== FrameType.Welcome) {
        throw new Error(`Expected a WELCOME, got frame type ${frame?.type}`);
      }
      if (ack) ws.send(frameMessage({ type: FrameType.Ack }));
      return decodeWelcome(frame.payload);
    },
    async close() {
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) {
        ws.close();
      }
      await withTimeout(closed, 10_000, "the raw WebSocket to close").catch(() => {});
    },
  };
}

/** A message holding one HELLO frame of this protocol version (with a resume token, if given). */
export function helloMessage(metadata: unknown, resume?: string): Uint8Array {
  return frameMessage({
    type: FrameType.Hello,
    payload: encodeHello({
      version: PROTOCOL_VERSION,
      metadata,
      settings: { ...DEFAULT_SETTINGS },
      ...(resume !== undefined ? { resume } : {}),
    }),
  });
}

/** A message holding one frame; flags, stream id and payload default to 0 and empty. */
export function frameMessage(frame: Partial<Frame> & { type: FrameType }): Uint8Array {
  return encodeFrames([{ flags: 0, streamId: 0, payload: new Uint8Array(0), ...frame }]);
}

/**
 * A frame header with any type byte and declared length, and no payload: for unknown
 * types and oversize lengths that `encodeFrames` would never produce.
 */
export function rawHeader(type: number, streamId: number, length: number): Uint8Array {
  const bytes = new Uint8Array(10);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, type);
  view.setUint8(1, 0);
  view.setUint32(2, streamId);
  view.setUint32(6, length);
  return bytes;
}
