/**
 * The runtime adapters' send contract: `Socket.send()` copies the bytes before it returns,
 * so a caller may reuse its buffer at once (the connection encodes every message into one
 * shared buffer). Checked on this runtime's server socket and its standard `WebSocket`
 * client, with enough data queued that writes are still pending when the buffer changes.
 */

import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Socket } from "../_socket.ts";
import { adaptWebSocket, RUNTIME } from "../runtime/mod.ts";
import { withTimeout } from "./_helpers.ts";
import { type AppServer, deferred, startAdaptedSocketServer } from "./_server_helpers.ts";

const MESSAGES = 64;
const MESSAGE_BYTES = 256 * 1024;
const GUARD = 20_000;

/** Sends MESSAGES messages from one buffer, refilled with the message's index after each send. */
function sendFromOneBuffer(socket: Socket): void {
  const buffer = new Uint8Array(MESSAGE_BYTES);
  for (let i = 0; i < MESSAGES; i++) {
    buffer.fill(i);
    socket.send(buffer);
  }
  buffer.fill(0xff);
}

/** Resolves with the indexes of the messages that arrived altered, once all have arrived. */
function collectMismatches(socket: Socket): Promise<number[]> {
  const done = deferred<number[]>();
  const mismatches: number[] = [];
  let count = 0;
  socket.listen({
    message(_, data): void {
      const index = count++;
      if (
        typeof data === "string" || data.byteLength !== MESSAGE_BYTES ||
        data.some((b) => b !== index)
      ) {
        mismatches.push(index);
      }
      if (count === MESSAGES) done.resolve(mismatches);
    },
    closed(): void {},
    drained(): void {},
  }, undefined);
  return done.promise;
}

function openClient(port: number): Promise<Socket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
  // As the client adapts it: "nodebuffer" messages on Bun, ArrayBuffers elsewhere.
  const socket = adaptWebSocket(ws, RUNTIME.binaryType);
  return new Promise((resolve, reject) => {
    ws.addEventListener("open", () => resolve(socket), { once: true });
    ws.addEventListener("error", () => reject(new Error("Cannot connect")), { once: true });
  });
}

describe("Socket adapters: adaptWebSocket() and Socket.send()", () => {
  let server: AppServer | undefined;
  let client: Socket | undefined;
  afterEach(async () => {
    client?.close(1000, "");
    await server?.close();
    server = client = undefined;
  });

  /** Opens a server and a client (`server`, `client`); resolves with the server's socket. */
  async function connect(): Promise<Socket> {
    const accepted = deferred<Socket>();
    server = startAdaptedSocketServer((socket) => accepted.resolve(socket));
    client = await withTimeout(openClient(server.port), GUARD, "connect");
    return await withTimeout(accepted.promise, GUARD, "accept");
  }

  /** Sends 300 messages of many sizes one way; each must arrive plain and intact, all kept. */
  async function checkPlainMessages(from: Socket, to: Socket): Promise<void> {
    const count = 300;
    const received: (Uint8Array | string)[] = [];
    const all = deferred();
    to.listen({
      message(_, data): void {
        received.push(data);
        if (received.length === count) all.resolve();
      },
      closed(): void {},
      drained(): void {},
    }, undefined);
    // Sizes from 1 byte to ~300 KiB: small messages may share a runtime's buffer pool, and
    // every one is kept until the last has come.
    const sizeOf = (i: number): number => 1 + ((i * 997) % 4096) + (i % 50 === 0 ? 300_000 : 0);
    for (let i = 0; i < count; i++) from.send(new Uint8Array(sizeOf(i)).fill(i & 0xff));
    await withTimeout(all.promise, GUARD, "messages");
    received.forEach((data, i) => {
      assert.ok(data instanceof Uint8Array, `message ${i} is bytes`);
      assert.equal(data.constructor, Uint8Array, `message ${i} is a plain Uint8Array`);
      assert.equal(data.byteLength, sizeOf(i));
      assert.ok(data.every((b) => b === (i & 0xff)), `message ${i} is intact`);
    });
  }

  it("adaptWebSocket() hands each binary message over as a plain Uint8Array that stays intact", {
    timeout: 60_000,
  }, async () => {
    const serverSide = await connect();
    await checkPlainMessages(serverSide, client!);
  });

  it("the server's socket hands each binary message over as a plain Uint8Array that stays intact", {
    timeout: 60_000,
  }, async () => {
    const serverSide = await connect();
    await checkPlainMessages(client!, serverSide);
  });

  it("adaptWebSocket()'s onClose hears a closed socket once, before the socket's host does", {
    timeout: 60_000,
  }, async () => {
    const accepted = deferred<Socket>();
    server = startAdaptedSocketServer((socket) => accepted.resolve(socket));
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/`);
    const heard: string[] = [];
    const adapted = adaptWebSocket(ws, RUNTIME.binaryType, () => heard.push("onClose"));
    const closed = deferred();
    adapted.listen({
      message(): void {},
      closed(_, code): void {
        heard.push(`closed ${code}`);
        closed.resolve();
      },
      drained(): void {},
    }, undefined);
    (await withTimeout(accepted.promise, GUARD, "accept")).close(4001, "bye");
    await withTimeout(closed.promise, GUARD, "close");
    assert.deepEqual(heard, ["onClose", "closed 4001"]);
  });

  it("Socket.send() on the server's socket copies the bytes before returning", {
    timeout: 60_000,
  }, async () => {
    const serverSide = await connect();
    const received = collectMismatches(client!);
    sendFromOneBuffer(serverSide);
    assert.deepEqual(await withTimeout(received, GUARD, "messages"), []);
  });

  it("Socket.send() on a standard WebSocket client copies the bytes before returning", {
    timeout: 60_000,
  }, async () => {
    const received = collectMismatches(await connect());
    sendFromOneBuffer(client!);
    assert.deepEqual(await withTimeout(received, GUARD, "messages"), []);
  });
});
