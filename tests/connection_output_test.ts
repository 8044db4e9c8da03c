/**
 * When a connection's output leaves, and with what. A request or response queued whole goes
 * out once the current microtasks have run, before the next macrotask; everything else waits
 * for the macrotask flush, so that what one handler produces in one go still shares a
 * message. A response is held back until its body ends (or the flush comes), so a body in
 * memory travels in the same message as its head even when many exchanges answer at once.
 *
 * Two `Connection`s talk over an in-memory socket pair here, so the test can see exactly
 * when `send` is called relative to a macrotask it scheduled itself (`setImmediate` runs
 * its callbacks in order, and the connection's flush is one of them).
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { Connection } from "../connection.ts";
import { type Socket, SocketEvents } from "../_socket.ts";
import { CloseCode, decodeFrames, FLAG_END_STREAM, FrameType, Session } from "../protocol/mod.ts";
import { ConnectionType, type Handler } from "../types.ts";
import { FakeClock } from "./_fake_clock.ts";
import { withTimeout } from "./_helpers.ts";
import { concatBytes } from "./_raw_frames.ts";

const GUARD = 5_000;
const ID = "01J0000000000000000000000";
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** One end of an in-memory wire: each message is copied and delivered as a macrotask. */
class MemorySocket extends SocketEvents implements Socket {
  readonly signalsDrain = false;
  readonly bufferedAmount = 0;
  peer: MemorySocket | undefined;
  /** Every message sent, in order. */
  readonly sent: Uint8Array[] = [];
  /** Whether sent messages reach the peer by themselves. */
  deliver = true;
  #closed = false;

  send(data: Uint8Array): void {
    const copy = data.slice();
    this.sent.push(copy);
    if (this.deliver) setImmediate(() => this.peer?.onMessage(copy));
  }

  /** Hands `data` to the connection as a message from the wire. */
  onMessage(data: Uint8Array | string): void {
    this.deliverMessage(data);
  }

  close(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    setImmediate(() => {
      this.deliverClose(code, reason);
      this.peer?.close(code, reason);
    });
  }
}

/** A client and a server `Connection` over a `MemorySocket` pair, handshake done. */
async function connectedPair(handler: Handler, serverClock?: FakeClock): Promise<{
  client: Connection;
  server: Connection;
  clientSocket: MemorySocket;
  serverSocket: MemorySocket;
}> {
  const clientSocket = new MemorySocket();
  const serverSocket = new MemorySocket();
  clientSocket.peer = serverSocket;
  serverSocket.peer = clientSocket;
  const server = new Connection({
    socket: serverSocket,
    session: new Session({ role: "server", bodyWithHead: true }, performance.now()),
    type: ConnectionType.ServerSide,
    logger: quiet,
    handler,
    hooks: { onHello: (_hello, answer) => answer.accept({ id: ID }) },
    ...(serverClock ? { clock: serverClock } : {}),
  });
  const clientSession = new Session({ role: "client", bodyWithHead: true }, performance.now());
  clientSession.hello(null);
  let opened!: () => void;
  const open = new Promise<void>((resolve) => opened = resolve);
  const client = new Connection({
    socket: clientSocket,
    session: clientSession,
    type: ConnectionType.ClientSide,
    logger: quiet,
    hooks: { onOpen: () => opened() },
  });
  await withTimeout(open, GUARD, "handshake");
  // The server counts the handshake done when the client's ACK arrives (a macrotask later).
  await withTimeout(waitFor(() => server.id === ID), GUARD, "server open");
  return { client, server, clientSocket, serverSocket };
}

/** Resolves once `condition()` holds, checking after each macrotask. */
async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setImmediate(resolve));
}

/** How many messages `socket` has sent by the time a macrotask scheduled now runs. */
function sentByNextMacrotask(socket: MemorySocket): Promise<number> {
  return new Promise((resolve) => setImmediate(() => resolve(socket.sent.length)));
}

/** Lets the microtasks queued so far (and those they queue, a few deep) run. */
async function microtasksRun(): Promise<void> {
  for (let i = 0; i < 8; i++) await Promise.resolve();
}

/** A body stream of `text` that has ended already. */
function streamOf(text: string): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(text));
      controller.close();
    },
  });
}

async function closeAll(...connections: Connection[]): Promise<void> {
  await Promise.all(connections.map((c) => withTimeout(c.close({ timeout: 0 }), GUARD, "close")));
}

/** Each message's frames, as (type, stream, end) triples. */
function framesOf(messages: Uint8Array[]): { type: number; streamId: number; end: boolean }[][] {
  return messages.map((message) =>
    decodeFrames(message, 1 << 24).map((frame) => ({
      type: frame.type,
      streamId: frame.streamId,
      end: (frame.flags & FLAG_END_STREAM) !== 0,
    }))
  );
}

describe("Connection output: when it leaves, and what travels together", () => {
  it("Connection.fetch() sends a request with a whole body before the next macrotask", {
    timeout: GUARD * 2,
  }, async () => {
    const { client, server, clientSocket } = await connectedPair(() => new Response("ok"));
    try {
      for (const init of [{ method: "POST", body: "ping" }, undefined]) {
        const before = clientSocket.sent.length;
        const checked = sentByNextMacrotask(clientSocket);
        const response = client.fetch("/ping", init);
        assert.equal(clientSocket.sent.length, before, "nothing leaves synchronously");
        assert.equal(await checked, before + 1, "one message before the next macrotask");
        assert.equal(await (await withTimeout(response, GUARD, "response")).text(), "ok");
      }
    } finally {
      await closeAll(client, server);
    }
  });

  it("a handler's Response with a body in memory leaves before the next macrotask", {
    timeout: GUARD * 2,
  }, async () => {
    const handler: Handler = (request) =>
      request.method === "HEAD" ? new Response(null, { status: 204 }) : new Response("pong");
    const { client, server, clientSocket, serverSocket } = await connectedPair(handler);
    try {
      for (const method of ["GET", "HEAD"]) {
        // Hold the request so the test hands it to the server itself, then watch the answer.
        clientSocket.deliver = false;
        const sentBefore = clientSocket.sent.length;
        const response = client.fetch("/ping", { method });
        await withTimeout(waitFor(() => clientSocket.sent.length > sentBefore), GUARD, "request");
        const request = clientSocket.sent.pop()!;
        clientSocket.deliver = true;
        const before = serverSocket.sent.length;
        const checked = sentByNextMacrotask(serverSocket);
        serverSocket.onMessage(request);
        assert.equal(await checked, before + 1, `${method}: the answer left before the macrotask`);
        const answer = await withTimeout(response, GUARD, "response");
        assert.equal(await answer.text(), method === "GET" ? "pong" : "");
      }
    } finally {
      await closeAll(client, server);
    }
  });

  it(
    "a server answers a request's message once: by the answer within the microtasks, else a NOOP",
    {
      timeout: GUARD * 2,
    },
    async () => {
      // The client's HELLO does not say noDelay, so the server nudges it (see Session).
      let release!: () => void;
      const handler: Handler = async (request) => {
        if (new URL(request.url).pathname === "/hold") {
          await new Promise<void>((resolve) => release = resolve);
          return new Response("held");
        }
        for (let i = 0; i < 12; i++) await Promise.resolve();
        return new Response("late");
      };
      const { client, server, clientSocket, serverSocket } = await connectedPair(handler);
      try {
        for (const target of ["/late", "/hold"]) {
          clientSocket.deliver = false;
          const sentBefore = clientSocket.sent.length;
          const response = client.fetch(target);
          await withTimeout(waitFor(() => clientSocket.sent.length > sentBefore), GUARD, "request");
          const request = clientSocket.sent.pop()!;
          clientSocket.deliver = true;
          const before = serverSocket.sent.length;
          serverSocket.onMessage(request);
          await withTimeout(waitFor(() => serverSocket.sent.length > before), GUARD, "the reply");
          // Two more macrotasks: nothing else follows (a NOOP behind an answer would).
          await sentByNextMacrotask(serverSocket);
          assert.equal(
            await sentByNextMacrotask(serverSocket),
            before + 1,
            `${target}: one message`,
          );
          const types = framesOf(serverSocket.sent.slice(before))[0].map((frame) => frame.type);
          if (target === "/late") {
            assert.deepEqual(types, [FrameType.Headers, FrameType.Data], "the answer carries it");
            assert.equal(await (await withTimeout(response, GUARD, "late")).text(), "late");
          } else {
            assert.deepEqual(types, [FrameType.Noop], "a NOOP while the handler holds");
            release();
            assert.equal(await (await withTimeout(response, GUARD, "held")).text(), "held");
          }
        }
      } finally {
        await closeAll(client, server);
      }
    },
  );

  it("a streamed body's chunks wait for the macrotask flush, and its end leaves at once", {
    timeout: GUARD * 2,
  }, async () => {
    let push!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => void (push = controller),
    });
    const { client, server, serverSocket } = await connectedPair(() => new Response(body));
    try {
      const response = await withTimeout(client.fetch("/stream"), GUARD, "response");
      const reader = response.body!.getReader();
      // A chunk in mid-body: queued, then sent by the macrotask flush (not before it).
      const before = serverSocket.sent.length;
      const checked = sentByNextMacrotask(serverSocket);
      push.enqueue(new TextEncoder().encode("a"));
      assert.equal(await checked, before, "a mid-body chunk waits for the flush");
      assert.deepEqual(
        (await withTimeout(reader.read(), GUARD, "chunk")).value,
        new Uint8Array([97]),
      );
      // The end: the body is complete, so it leaves before the next macrotask.
      const beforeEnd = serverSocket.sent.length;
      const checkedEnd = sentByNextMacrotask(serverSocket);
      push.close();
      assert.equal(await checkedEnd, beforeEnd + 1, "the end of the body leaves at once");
      assert.equal((await withTimeout(reader.read(), GUARD, "end")).done, true);
    } finally {
      await closeAll(client, server);
    }
  });
  it("64 responses with bodies in memory each leave in the same message as their head", {
    timeout: GUARD * 2,
  }, async () => {
    const { client, server, clientSocket, serverSocket } = await connectedPair(
      (request) => new Response(`pong ${new URL(request.url).pathname}`),
    );
    try {
      // All 64 requests reach the server in one message, as from a Bun agent: 64 heads are
      // ready at once, more than a batch that leaves early (32 frames).
      clientSocket.deliver = false;
      const sentBefore = clientSocket.sent.length;
      const responses = Array.from({ length: 64 }, (_, i) => client.fetch(`/${i}`));
      await withTimeout(
        waitFor(() => clientSocket.sent.length > sentBefore),
        GUARD,
        "requests",
      );
      const requests = clientSocket.sent.splice(sentBefore);
      clientSocket.deliver = true;
      const answeredBefore = serverSocket.sent.length;
      serverSocket.onMessage(concatBytes(requests));
      const texts = await withTimeout(
        Promise.all(responses.map(async (response) => await (await response).text())),
        GUARD,
        "responses",
      );
      assert.deepEqual(texts, Array.from({ length: 64 }, (_, i) => `pong /${i}`));
      const messages = framesOf(serverSocket.sent.slice(answeredBefore));
      assert.ok(messages.length > 1, "a batch this large leaves in parts");
      for (const frames of messages) {
        for (const frame of frames.filter((f) => f.type === FrameType.Headers)) {
          assert.ok(
            frames.some((f) => f.type === FrameType.Data && f.streamId === frame.streamId && f.end),
            `stream ${frame.streamId}: its head left without the end of its body`,
          );
        }
      }
    } finally {
      await closeAll(client, server);
    }
  });

  it(
    "forward() sends a lone request at once; with others in flight, those of a macrotask share one message",
    {
      timeout: GUARD * 2,
    },
    async () => {
      // Requests stay in flight until the test answers them.
      const answers: ((response: Response) => void)[] = [];
      const { client, server, clientSocket } = await connectedPair(() =>
        new Promise<Response>((resolve) => answers.push(resolve))
      );
      try {
        const before = clientSocket.sent.length;
        const responses = [client.forward({ method: "GET", target: "/0" })];
        await microtasksRun();
        assert.equal(clientSocket.sent.length, before + 1, "the lone request left at once");
        // Three more, each from a callback of its own within one macrotask, as an HTTP front
        // hands them over: they wait for the flush, and leave together.
        for (const target of ["/1", "/2", "/3"]) {
          responses.push(client.forward({ method: "GET", target }));
          await microtasksRun();
        }
        assert.equal(clientSocket.sent.length, before + 1, "nothing more before the flush");
        assert.equal(
          await sentByNextMacrotask(clientSocket),
          before + 2,
          "one message at the flush",
        );
        const heads = framesOf(clientSocket.sent.slice(before + 1))[0]
          .filter((frame) => frame.type === FrameType.Headers);
        assert.equal(heads.length, 3, "the three requests in it");
        // `fetch()` is not gathered: each request leaves once its microtasks have run.
        const fetched = [client.fetch("/4")];
        await microtasksRun();
        fetched.push(client.fetch("/5"));
        await microtasksRun();
        assert.equal(clientSocket.sent.length, before + 4, "fetch: a message per request");
        await withTimeout(waitFor(() => answers.length === 6), GUARD, "requests served");
        for (const answer of answers) answer(new Response("ok"));
        for (const response of [...responses, ...fetched]) {
          assert.equal(await (await withTimeout(response, GUARD, "response")).text(), "ok");
        }
      } finally {
        await closeAll(client, server);
      }
    },
  );

  it("answers that come after later input share the flush's message while others are in flight", {
    timeout: GUARD * 2,
  }, async () => {
    // The handler answers later, from elsewhere (as a tunnel's upstream does).
    const answers = new Map<string, (response: Response) => void>();
    const { client, server, serverSocket } = await connectedPair((request) =>
      new Promise<Response>((resolve) => answers.set(new URL(request.url).pathname, resolve))
    );
    try {
      // A lone exchange answered later still leaves at once.
      const lone = client.fetch("/lone");
      await withTimeout(waitFor(() => answers.has("/lone")), GUARD, "lone request");
      let before = serverSocket.sent.length;
      answers.get("/lone")!(new Response("lone"));
      await microtasksRun();
      assert.equal(serverSocket.sent.length, before + 1, "the lone answer left at once");
      assert.equal(await (await withTimeout(lone, GUARD, "lone")).text(), "lone");
      // Requests in messages of their own; the first three are answered after the last has
      // come, one per callback within one macrotask (one with a streamed body that ends at
      // once), while the last is still in flight.
      const responses: Promise<Response>[] = [];
      for (const target of ["/a", "/b", "/c", "/last"]) {
        responses.push(client.fetch(target));
        await withTimeout(waitFor(() => answers.has(target)), GUARD, `request ${target}`);
      }
      before = serverSocket.sent.length;
      answers.get("/a")!(new Response("a"));
      await microtasksRun();
      answers.get("/b")!(new Response(streamOf("b")));
      await microtasksRun();
      answers.get("/c")!(new Response(null, { status: 204 }));
      await microtasksRun();
      assert.equal(serverSocket.sent.length, before, "nothing before the flush");
      assert.equal(await sentByNextMacrotask(serverSocket), before + 1, "one message at the flush");
      answers.get("/last")!(new Response("last"));
      const texts = await withTimeout(
        Promise.all(responses.map(async (response) => await (await response).text())),
        GUARD,
        "responses",
      );
      assert.deepEqual(texts, ["a", "b", "", "last"]);
    } finally {
      await closeAll(client, server);
    }
  });

  it("a response whose body has not started still sends its head at the macrotask flush", {
    timeout: GUARD * 2,
  }, async () => {
    let push!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => void (push = controller),
    });
    const { client, server } = await connectedPair(() =>
      new Response(body, { status: 201, headers: { "x-stream": "yes" } })
    );
    try {
      // Nothing is ever enqueued before the caller has the head.
      const response = await withTimeout(client.fetch("/later"), GUARD, "head");
      assert.equal(response.status, 201);
      assert.equal(response.headers.get("x-stream"), "yes");
      push.enqueue(new TextEncoder().encode("late"));
      push.close();
      assert.equal(await withTimeout(response.text(), GUARD, "body"), "late");
    } finally {
      await closeAll(client, server);
    }
  });

  it("a response body larger than the hold leaves before it ends, head first", {
    timeout: GUARD * 2,
  }, async () => {
    // 16 chunks of 16 KiB enqueued at once, then a body that stays open: 256 KiB must reach
    // the caller without waiting for the end.
    let push!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        push = controller;
        for (let i = 0; i < 16; i++) controller.enqueue(new Uint8Array(16 * 1024).fill(i));
      },
    });
    const { client, server } = await connectedPair(() => new Response(body));
    try {
      const response = await withTimeout(client.fetch("/big"), GUARD, "head");
      const reader = response.body!.getReader();
      let received = 0;
      while (received < 256 * 1024) {
        const { value, done } = await withTimeout(reader.read(), GUARD, "chunk");
        assert.equal(done, false);
        received += value!.byteLength;
      }
      assert.equal(received, 256 * 1024);
      push.close();
      assert.equal((await withTimeout(reader.read(), GUARD, "end")).done, true);
    } finally {
      await closeAll(client, server);
    }
  });

  it("Connection keeps its deadlines on the clock it is given", async () => {
    const clock = new FakeClock(50_000);
    const socket = new MemorySocket();
    socket.deliver = false;
    const session = new Session({ role: "client", handshakeTimeout: 1_000 }, clock.now());
    session.hello(null);
    const connection = new Connection({
      socket,
      session,
      type: ConnectionType.ClientSide,
      logger: quiet,
      clock,
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(socket.sent.length, 1, "the hello left");
    clock.advance(999);
    assert.equal(connection.isClosed, false);
    clock.advance(1);
    assert.equal(connection.isClosed, true, "timed out on the fake clock, with no sleeping");
    assert.equal((await connection.closed).code, CloseCode.HandshakeTimeout);
  });

  it("Connection.close() waits for exchanges until its timeout on the connection's clock", {
    timeout: GUARD * 2,
  }, async () => {
    const clock = new FakeClock(0);
    let started!: () => void;
    const handling = new Promise<void>((resolve) => started = resolve);
    // The handler never answers: only the timeout ends the close.
    const { client, server } = await connectedPair(() => {
      started();
      return new Promise<Response>(() => {});
    }, clock);
    try {
      const response = client.fetch("/hang").catch((error) => error);
      await withTimeout(handling, GUARD, "request");
      const closing = server.close({ timeout: 1_000 });
      clock.advance(999);
      assert.equal(server.isClosed, false, "the exchange still has time");
      clock.advance(1);
      assert.equal(server.isClosed, true, "closed at the timeout, with no sleeping");
      await withTimeout(closing, GUARD, "close");
      await withTimeout(response, GUARD, "response");
    } finally {
      await closeAll(client, server);
    }
  });
});
