/**
 * A hostile WebSocket client on a raw TCP socket (`node:net`, in Deno and Bun alike).
 *
 * No WebSocket API lets a peer stop reading, send a 60 MiB message without buffering a
 * copy per send, or write half a frame; this one does all three. It speaks just enough
 * RFC 6455: the upgrade, masked binary messages (with a zero mask, which leaves the
 * payload as it is), and reading the server's unmasked frames back while it reads.
 *
 * @module
 */

import net from "node:net";
import {
  decodeFrames,
  decodeWelcome,
  decodeWindowUpdate,
  type Frame,
  FrameType,
  type Welcome,
} from "../protocol/mod.ts";
import { withTimeout } from "./_helpers.ts";
import { frameMessage, helloMessage } from "./_raw_peer.ts";

/** A connected raw TCP WebSocket peer. */
export interface TcpPeer {
  /** Sends one binary WebSocket message. */
  send(message: Uint8Array): void;
  /** Writes raw bytes to the TCP socket (half a frame, say). */
  write(bytes: Uint8Array): void;
  /** Stops reading: what the server writes backs up in its own buffers. */
  pause(): void;
  /** Reads again. */
  resume(): void;
  /** The next binary message from the server (while reading). */
  nextMessage(ms?: number): Promise<Uint8Array>;
  /** Sends HELLO and ACK, and returns the WELCOME. */
  handshake(metadata?: unknown): Promise<Welcome>;
  /** Resolves with the server's close code (1006 if the TCP socket ended without one). */
  readonly closed: Promise<number>;
  /** Bytes the socket has taken and not yet written (its own send buffer). */
  readonly writableLength: number;
  /** Ends the TCP socket at once. */
  destroy(): void;
}

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";

/**
 * Opens a raw TCP WebSocket to `ws://127.0.0.1:{port}{path}` and completes the upgrade.
 *
 * @param port The server's port.
 * @param path The request path.
 * @returns The peer, upgraded.
 */
export async function connectTcp(port: number, path = "/"): Promise<TcpPeer> {
  const socket = net.connect(port, "127.0.0.1");
  socket.setNoDelay(true);
  let buffered: Uint8Array = new Uint8Array(0);
  const messages: Uint8Array[] = [];
  const waiters: ((message: Uint8Array) => void)[] = [];
  let upgraded: (() => void) | undefined;
  let failUpgrade: ((error: Error) => void) | undefined;
  let closeCode: number | undefined;
  const closed = new Promise<number>((resolve) => {
    socket.on("close", () => resolve(closeCode ?? 1006));
  });
  socket.on("error", () => {});
  socket.on("data", (chunk: Uint8Array) => {
    buffered = concat(buffered, chunk);
    if (upgraded) {
      const end = indexOfHeadEnd(buffered);
      if (end === -1) return;
      const head = new TextDecoder().decode(buffered.subarray(0, end));
      buffered = buffered.subarray(end + 4);
      const done = upgraded;
      upgraded = undefined;
      if (head.startsWith("HTTP/1.1 101")) done();
      else failUpgrade!(new Error(`Upgrade refused: ${head.split("\r\n")[0]}`));
    }
    for (;;) {
      const frame = readFrame(buffered);
      if (!frame) return;
      buffered = buffered.subarray(frame.size);
      if (frame.opcode === 0x8) {
        closeCode = frame.payload.byteLength >= 2
          ? (frame.payload[0] << 8) | frame.payload[1]
          : 1005;
        socket.end();
      } else if (frame.opcode === 0x2) {
        const waiter = waiters.shift();
        if (waiter) waiter(frame.payload);
        else messages.push(frame.payload);
      }
    }
  });
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      upgraded = resolve;
      failUpgrade = reject;
      socket.once("connect", () => {
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
            `Connection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      socket.once("close", () => reject(new Error("Socket closed before the upgrade")));
    }),
    10_000,
    "the raw TCP upgrade",
  );
  const nextMessage = (ms = 10_000): Promise<Uint8Array> => {
    const queued = messages.shift();
    if (queued) return Promise.resolve(queued);
    return withTimeout(
      new Promise<Uint8Array>((resolve) => waiters.push(resolve)),
      ms,
      "a message on the raw TCP peer",
    );
  };
  const send = (message: Uint8Array): void => {
    socket.write(frameHeader(message.byteLength));
    socket.write(message);
  };
  return {
    send,
    write: (bytes) => socket.write(bytes),
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    nextMessage,
    async handshake(metadata = { name: "tcp" }) {
      send(helloMessage(metadata));
      const [frame] = decodeFrames(await nextMessage(), Infinity);
      if (frame?.type !== FrameType.Welcome) throw new Error("Expected a WELCOME");
      send(frameMessage({ type: FrameType.Ack }));
      return decodeWelcome(frame.payload);
    },
    closed,
    get writableLength() {
      return socket.writableLength;
    },
    destroy: () => socket.destroy(),
  };
}

/** The frames of the server's next message (while reading). */
export async function nextFrames(peer: TcpPeer, ms?: number): Promise<Frame[]> {
  return decodeFrames(await peer.nextMessage(ms), Infinity);
}

/**
 * The connection credit a raw peer has: what the server's WELCOME announced, plus the
 * WINDOW_UPDATEs on stream 0 it reads. An attacker that respects it is closed for nothing
 * but what it is testing.
 */
export class Credit {
  /**
   * @param left The credit to start with (the server's `connectionWindow`).
   * @param peer The peer, read while waiting for more.
   * @param ms How long one read may wait.
   */
  constructor(public left: number, readonly peer: TcpPeer, readonly ms = 30_000) {}

  /** Counts a frame the peer read: a connection WINDOW_UPDATE adds credit. */
  see(frame: Frame): void {
    if (frame.type === FrameType.WindowUpdate && frame.streamId === 0) {
      this.left += decodeWindowUpdate(frame.payload);
    }
  }

  /** Waits (reading) until `bytes` of credit are there, then spends them. */
  async spend(bytes: number): Promise<void> {
    while (this.left < bytes) {
      for (const frame of await nextFrames(this.peer, this.ms)) this.see(frame);
    }
    this.left -= bytes;
  }
}

/** A masked (zero-key) binary frame header for a payload of `length` bytes. */
export function frameHeader(length: number): Uint8Array {
  const lengthBytes = length < 126 ? 0 : length < 0x10000 ? 2 : 8;
  const header = new Uint8Array(2 + lengthBytes + 4);
  header[0] = 0x82; // FIN, binary
  if (lengthBytes === 0) header[1] = 0x80 | length;
  else if (lengthBytes === 2) {
    header[1] = 0x80 | 126;
    header[2] = length >> 8;
    header[3] = length & 0xff;
  } else {
    header[1] = 0x80 | 127;
    new DataView(header.buffer).setBigUint64(2, BigInt(length));
  }
  // The mask key stays 0: masking then changes nothing.
  return header;
}

function readFrame(
  bytes: Uint8Array,
): { opcode: number; payload: Uint8Array; size: number } | undefined {
  if (bytes.byteLength < 2) return undefined;
  const opcode = bytes[0] & 0x0f;
  let length = bytes[1] & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (bytes.byteLength < 4) return undefined;
    length = (bytes[2] << 8) | bytes[3];
    offset = 4;
  } else if (length === 127) {
    if (bytes.byteLength < 10) return undefined;
    length = Number(new DataView(bytes.buffer, bytes.byteOffset + 2, 8).getBigUint64(0));
    offset = 10;
  }
  if (bytes.byteLength < offset + length) return undefined;
  return { opcode, payload: bytes.slice(offset, offset + length), size: offset + length };
}

function indexOfHeadEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.byteLength; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.byteLength === 0) return new Uint8Array(b);
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}
