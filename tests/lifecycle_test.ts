/**
 * Connection lifecycle and faults over real loopback sockets: closing with work pending,
 * losing the connection mid-body, garbage from a raw WebSocket peer, and the client's
 * reconnection (backoff, a restarted server, giving up).
 */

import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CloseCode,
  type Connection,
  ConnectionClosedError,
  EventType,
  type Handler,
  HandshakeError,
  ProtocolError,
  WebSocketClient,
  WebSocketServer,
} from "../mod.ts";
import { FrameType } from "../protocol/mod.ts";
import { eventFor, nextEvent, type Pair, startPair, withTimeout } from "./_helpers.ts";
import { type ProxiedPair, startProxiedPair, startProxy, type TcpProxy } from "./_proxy.ts";
import { connectRaw, frameMessage, rawHeader, type RawPeer } from "./_raw_peer.ts";

const GUARD = 10_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Counts down to zero; `done` resolves when it gets there. */
function countdown(count: number): { tick(): void; done: Promise<void> } {
  const { promise, resolve } = Promise.withResolvers<void>();
  let left = count;
  return {
    tick() {
      if (--left === 0) resolve();
    },
    done: promise,
  };
}

/** A handler that never answers: it records each request and waits for its signal to abort. */
function neverAnswers(seen: Request[], arrived: () => void): Handler {
  return (request) => {
    seen.push(request);
    arrived();
    return new Promise<Response>((_, reject) => {
      request.signal.addEventListener("abort", () => reject(request.signal.reason), {
        once: true,
      });
    });
  };
}

/** Resolves with the signal's reason when it aborts. */
function whenAborted(signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(signal.reason), { once: true })
  );
}

/** Asserts every outcome is a rejection with ConnectionClosedError. */
function assertAllClosed(outcomes: PromiseSettledResult<unknown>[], what: string): void {
  for (const [i, outcome] of outcomes.entries()) {
    assert.equal(outcome.status, "rejected", `${what} #${i} should reject`);
    const reason = (outcome as PromiseRejectedResult).reason;
    assert.ok(
      reason instanceof ConnectionClosedError,
      `${what} #${i} should reject with ConnectionClosedError, got ${reason}`,
    );
  }
}

describe("Connection.close() with pending work", () => {
  let pair: Pair | undefined;

  afterEach(async () => {
    await pair?.close();
    pair = undefined;
  });

  for (const closer of ["client", "server"] as const) {
    it(`Connection.close({ timeout: 0 }) on the ${closer} side rejects every pending fetch and aborts every handler on both ends`, async () => {
      pair = await startPair({}, { keepAlive: false });
      const { clientSide, serverSide } = pair;
      const perDirection = 3;
      const arrived = countdown(2 * perDirection);
      const seenByServer: Request[] = [];
      const seenByClient: Request[] = [];
      serverSide.serve(neverAnswers(seenByServer, arrived.tick));
      clientSide.serve(neverAnswers(seenByClient, arrived.tick));

      const fetches: Promise<Response>[] = [];
      for (let i = 0; i < perDirection; i++) {
        fetches.push(clientSide.fetch(`/to-server/${i}`));
        fetches.push(serverSide.fetch(`/to-agent/${i}`, { method: "POST", body: "x" }));
      }
      const outcomes = Promise.allSettled(fetches);
      await withTimeout(arrived.done, GUARD, "every handler to start");
      const aborts = [...seenByServer, ...seenByClient].map((request) =>
        whenAborted(request.signal)
      );

      const closing = closer === "client" ? clientSide : serverSide;
      const other = closer === "client" ? serverSide : clientSide;
      await withTimeout(
        closing.close({ timeout: 0, code: 1000, reason: "done here" }),
        GUARD,
        "close({ timeout: 0 })",
      );

      assertAllClosed(await withTimeout(outcomes, GUARD, "pending fetches to settle"), "fetch");
      const reasons = await withTimeout(Promise.all(aborts), GUARD, "every handler's abort");
      for (const reason of reasons) {
        assert.ok(reason instanceof ConnectionClosedError, `abort reason: ${reason}`);
      }
      assert.equal(seenByServer.length, perDirection);
      assert.equal(seenByClient.length, perDirection);

      const mine = await withTimeout(closing.closed, GUARD, `${closer}'s closed`);
      const theirs = await withTimeout(other.closed, GUARD, "the peer's closed");
      assert.equal(mine.code, 1000);
      assert.equal(mine.reason, "done here");
      assert.equal(theirs.code, 1000);
      assert.equal(theirs.reason, "done here");
      assert.equal(closing.inFlight, 0);
      assert.equal(other.inFlight, 0);
    });
  }

  it("WebSocketServer.close() with a short closeTimeout rejects the agent's pending fetches and aborts the server's handlers", async () => {
    pair = await startPair({ closeTimeout: 50 }, { keepAlive: false });
    const { clientSide, serverSide, server } = pair;
    const arrived = countdown(5);
    const seenByServer: Request[] = [];
    const seenByClient: Request[] = [];
    serverSide.serve(neverAnswers(seenByServer, arrived.tick));
    clientSide.serve(neverAnswers(seenByClient, arrived.tick));
    const fetches = [
      clientSide.fetch("/a"),
      clientSide.fetch("/b"),
      clientSide.fetch("/c", { method: "PUT", body: "body" }),
      serverSide.fetch("/agent/a"),
      serverSide.fetch("/agent/b"),
    ];
    const outcomes = Promise.allSettled(fetches);
    await withTimeout(arrived.done, GUARD, "every handler to start");
    const aborts = [...seenByServer, ...seenByClient].map((request) => whenAborted(request.signal));

    await withTimeout(server.close(), GUARD, "server.close()");

    assertAllClosed(await withTimeout(outcomes, GUARD, "pending fetches to settle"), "fetch");
    await withTimeout(Promise.all(aborts), GUARD, "every handler's abort");
    const info = await withTimeout(clientSide.closed, GUARD, "the agent's closed");
    assert.equal(info.code, CloseCode.GoingAway);
    assert.equal(info.reason, "Server is shutting down");
    assert.equal(server.connections().length, 0);
  });

  it("Connection.fetch() after close rejects with ConnectionClosedError on both ends", async () => {
    pair = await startPair({}, { keepAlive: false });
    const { clientSide, serverSide } = pair;
    serverSide.serve(() => new Response("ok"));
    assert.equal(await (await clientSide.fetch("/before")).text(), "ok");
    await clientSide.close({ timeout: 0, code: 1000, reason: "bye" });
    const info = await withTimeout(serverSide.closed, GUARD, "the server's closed");
    assert.deepEqual({ code: info.code, reason: info.reason }, { code: 1000, reason: "bye" });
    assert.ok(clientSide.isClosed);
    assert.ok(serverSide.isClosed);
    await assert.rejects(clientSide.fetch("/after"), ConnectionClosedError);
    await assert.rejects(serverSide.fetch("/after"), ConnectionClosedError);
    await assert.rejects(
      clientSide.fetch("/after", { method: "POST", body: "data" }),
      ConnectionClosedError,
    );
  });

  it("Connection.closed resolves with an application close code and reason", async () => {
    pair = await startPair({}, { keepAlive: false });
    const { clientSide, serverSide } = pair;
    await serverSide.close({ timeout: 0, code: 4321, reason: "custom reason" });
    const server = await serverSide.closed;
    const client = await withTimeout(clientSide.closed, GUARD, "the agent's closed");
    assert.equal(server.code, 4321);
    assert.equal(server.reason, "custom reason");
    assert.equal(client.code, 4321);
    assert.equal(client.reason, "custom reason");
  });
});

describe("Connection loss mid-body", () => {
  let pair: ProxiedPair | undefined;

  afterEach(async () => {
    await pair?.close();
    pair = undefined;
  });

  const LOSSES = [
    { name: "the TCP connection drops", lose: (p: ProxiedPair) => p.proxy.resetAll() },
    {
      name: "the server closes with timeout 0",
      lose: (p: ProxiedPair) => void p.serverSide.close({ timeout: 0 }),
    },
  ];

  for (const loss of LOSSES) {
    it(`Response body reader errors instead of ending when ${loss.name}`, async () => {
      pair = await startProxiedPair({}, { keepAlive: false });
      const { clientSide, serverSide } = pair;
      const handlerSignal = Promise.withResolvers<AbortSignal>();
      const cancelled = Promise.withResolvers<unknown>();
      serverSide.serve((request) => {
        handlerSignal.resolve(request.signal);
        return new Response(
          new ReadableStream<Uint8Array>({
            start(controller) {
              controller.enqueue(encoder.encode("first chunk"));
            },
            cancel(reason) {
              cancelled.resolve(reason);
            },
          }),
        );
      });
      const response = await withTimeout(clientSide.fetch("/stream"), GUARD, "the response");
      const reader = response.body!.getReader();
      const first = await withTimeout(reader.read(), GUARD, "the first chunk");
      assert.equal(decoder.decode(first.value), "first chunk");
      const aborted = whenAborted(await handlerSignal.promise);
      const next = reader.read();
      loss.lose(pair);
      await assert.rejects(withTimeout(next, GUARD, "the body reader after the loss"), (error) => {
        assert.ok(error instanceof ConnectionClosedError, `body error: ${error}`);
        return true;
      });
      await withTimeout(aborted, GUARD, "the handler's request.signal to abort");
      await withTimeout(cancelled.promise, GUARD, "the handler's response body to be cancelled");
      await withTimeout(clientSide.closed, GUARD, "the agent's closed");
    });
  }

  for (
    const loss of [
      { name: "the TCP connection drops", lose: (p: ProxiedPair) => p.proxy.resetAll() },
      {
        name: "the agent closes with timeout 0",
        lose: (p: ProxiedPair) => void p.clientSide.close({ timeout: 0 }),
      },
    ]
  ) {
    it(`Request body reader in the handler errors instead of ending when ${loss.name}`, async () => {
      pair = await startProxiedPair({}, { keepAlive: false });
      const { clientSide, serverSide } = pair;
      const readOutcome = Promise.withResolvers<PromiseSettledResult<unknown>>();
      const firstSeen = Promise.withResolvers<string>();
      const handlerSignal = Promise.withResolvers<AbortSignal>();
      serverSide.serve(async (request) => {
        handlerSignal.resolve(request.signal);
        const reader = request.body!.getReader();
        const first = await reader.read();
        firstSeen.resolve(decoder.decode(first.value));
        const [outcome] = await Promise.allSettled([reader.read()]);
        readOutcome.resolve(outcome);
        return new Response("unreachable");
      });
      let body!: ReadableStreamDefaultController<Uint8Array>;
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          body = controller;
        },
      });
      const fetching = clientSide.fetch("/upload", {
        method: "POST",
        body: stream,
        duplex: "half",
      } as RequestInit);
      const fetchOutcome = Promise.allSettled([fetching]);
      body.enqueue(encoder.encode("part one"));
      assert.equal(await withTimeout(firstSeen.promise, GUARD, "the first part"), "part one");
      const aborted = whenAborted(await handlerSignal.promise);
      loss.lose(pair);
      const outcome = await withTimeout(readOutcome.promise, GUARD, "the handler's second read");
      assert.equal(outcome.status, "rejected", "the body must error, not end");
      await withTimeout(aborted, GUARD, "the handler's request.signal to abort");
      assertAllClosed(await withTimeout(fetchOutcome, GUARD, "the fetch to settle"), "fetch");
      await withTimeout(serverSide.closed, GUARD, "the server's closed");
    });
  }

  it("Connection ends with ConnectionFailure on both ends when the TCP connection drops", async () => {
    pair = await startProxiedPair({}, { keepAlive: false });
    const serverEvents = pair.server.events();
    const clientEvents = pair.client.events();
    const id = pair.serverSide.id;
    try {
      pair.proxy.resetAll();
      const [serverFailure, clientFailure] = await Promise.all([
        eventFor(serverEvents, EventType.ConnectionFailure, id),
        eventFor(clientEvents, EventType.ConnectionFailure, id),
      ]);
      assert.ok(serverFailure.error instanceof Error);
      assert.ok(clientFailure.error instanceof Error);
      await eventFor(serverEvents, EventType.ConnectionClosed, id);
      await eventFor(clientEvents, EventType.ConnectionClosed, id);
      assert.equal(pair.server.connection(id), undefined);
      await assert.rejects(pair.clientSide.fetch("/after"), ConnectionClosedError);
    } finally {
      await serverEvents.return?.();
      await clientEvents.return?.();
    }
  });
});

describe("WebSocketServer with a raw WebSocket peer sending garbage", () => {
  let pair: Pair;
  let raw: RawPeer | undefined;

  beforeEach(async () => {
    pair = await startPair();
    pair.serverSide.serve((request) => new Response(`server saw ${new URL(request.url).pathname}`));
    pair.clientSide.serve((request) => new Response(`agent saw ${new URL(request.url).pathname}`));
  });
  afterEach(async () => {
    await raw?.close();
    raw = undefined;
    await pair.close();
  });

  /** One exchange each way on the well-behaved agent's connection. */
  async function exchangeBothWays(tag: string): Promise<void> {
    const [up, down] = await withTimeout(
      Promise.all([pair.clientSide.fetch(`/up/${tag}`), pair.serverSide.fetch(`/down/${tag}`)]),
      GUARD,
      `exchanges ${tag}`,
    );
    assert.equal(await up.text(), `server saw /up/${tag}`);
    assert.equal(await down.text(), `agent saw /down/${tag}`);
  }

  /** Exchanges continuously until stopped; resolves with how many rounds succeeded. */
  function keepExchanging(): { stop(): Promise<number> } {
    let stopping = false;
    const running = (async () => {
      let rounds = 0;
      do {
        await exchangeBothWays(`during-${rounds}`);
        rounds++;
      } while (!stopping);
      return rounds;
    })();
    running.catch(() => {});
    return {
      stop() {
        stopping = true;
        return running;
      },
    };
  }

  /** Deterministic pseudo-random bytes (xorshift32). */
  function randomBytes(seed: number, length: number): Uint8Array {
    const bytes = new Uint8Array(length);
    let x = seed >>> 0 || 1;
    for (let i = 0; i < length; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      bytes[i] = x & 0xff;
    }
    return bytes;
  }

  /** The close code a server must answer random bytes with, from their first header. */
  function expectedCode(bytes: Uint8Array): number {
    const known = new Set<number>(Object.values(FrameType));
    if (bytes.byteLength < 10 || !known.has(bytes[0])) return CloseCode.ProtocolError;
    const length = new DataView(bytes.buffer, bytes.byteOffset).getUint32(6);
    return length > 1024 * 1024 ? CloseCode.FrameTooLarge : CloseCode.ProtocolError;
  }

  const CASES: { name: string; code: number; send(peer: RawPeer): Promise<void> | void }[] = [
    {
      name: "a text message",
      code: CloseCode.ProtocolError,
      send: (peer) => peer.ws.send("GET / HTTP/1.1"),
    },
    {
      name: "random bytes",
      code: expectedCode(randomBytes(0x5eed, 64)),
      send: (peer) => peer.ws.send(randomBytes(0x5eed, 64)),
    },
    {
      name: "random bytes shorter than a frame header",
      code: CloseCode.ProtocolError,
      send: (peer) => peer.ws.send(randomBytes(7, 7)),
    },
    {
      name: "a frame with an unknown type",
      code: CloseCode.ProtocolError,
      send: (peer) => peer.ws.send(rawHeader(0x7e, 0, 0)),
    },
    {
      name: "a frame declaring an oversize length",
      code: CloseCode.FrameTooLarge,
      send: (peer) => peer.ws.send(rawHeader(FrameType.Data, 1, 0x7fff_ffff)),
    },
    {
      name: "a valid hello followed by garbage",
      code: CloseCode.ProtocolError,
      send: async (peer) => {
        await peer.handshake({ name: "raw" }, false);
        peer.ws.send(randomBytes(3, 5));
      },
    },
    {
      name: "a completed handshake followed by a frame with an unknown type",
      code: CloseCode.ProtocolError,
      send: async (peer) => {
        await peer.handshake({ name: "raw" });
        peer.ws.send(rawHeader(0x7e, 0, 0));
      },
    },
    {
      name: "a completed handshake followed by data on a stream never opened",
      code: CloseCode.ProtocolError,
      send: async (peer) => {
        await peer.handshake({ name: "raw" });
        peer.ws.send(frameMessage({ type: FrameType.Data, streamId: 9 }));
      },
    },
  ];

  for (const c of CASES) {
    it(`WebSocketServer closes the socket with ${c.code} on ${c.name}; other connections keep working`, async () => {
      await exchangeBothWays("before");
      const during = keepExchanging();
      raw = connectRaw(pair.url);
      await withTimeout(raw.opened, GUARD, "the raw WebSocket to open");
      await c.send(raw);
      const closed = await withTimeout(raw.closed, GUARD, "the server to close the raw socket");
      const rounds = await withTimeout(during.stop(), GUARD, "the exchanges during the garbage");
      assert.equal(closed.code, c.code, `close code (reason: ${closed.reason})`);
      assert.ok(rounds >= 1);
      await exchangeBothWays("after");
      assert.deepEqual(pair.server.connections().map((c) => c.id), [pair.serverSide.id]);
      assert.equal(pair.clientSide.isClosed, false);
    });
  }

  it("WebSocketServer emits ConnectionFailure with a ProtocolError for a handshaken connection that sends garbage", async () => {
    const events = pair.server.events();
    try {
      raw = connectRaw(pair.url);
      const welcome = await withTimeout(raw.handshake({ name: "raw" }), GUARD, "the handshake");
      const received = await eventFor(events, EventType.ConnectionReceived, welcome.id);
      assert.deepEqual(received.connection!.metadata, { name: "raw" });
      raw.ws.send(rawHeader(0x7e, 0, 0));
      const failure = await eventFor(events, EventType.ConnectionFailure, welcome.id);
      assert.ok(failure.error instanceof ProtocolError, `error: ${failure.error}`);
      assert.equal((failure.error as ProtocolError).code, CloseCode.ProtocolError);
      const closed = await eventFor(events, EventType.ConnectionClosed, welcome.id);
      assert.ok(closed.error instanceof ProtocolError);
      assert.equal(
        (await withTimeout(raw.closed, GUARD, "raw close")).code,
        CloseCode.ProtocolError,
      );
      assert.equal(pair.server.connection(welcome.id), undefined);
      await exchangeBothWays("after");
    } finally {
      await events.return?.();
    }
  });
});

describe("WebSocketClient reconnection", () => {
  const cleanups: (() => Promise<void>)[] = [];

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** Serves, on every connection of `client`, a handler that says which connection it is. */
  function agentHandler(request: Request, info: { connection: Connection }): Response {
    return new Response(`agent on ${info.connection.id} saw ${new URL(request.url).pathname}`);
  }

  it("WebSocketClient reconnects with backoff after the server closes the connection with 4006", async () => {
    const pair = await startPair(
      { handler: () => new Response("server here") },
      { reconnect: { initialDelay: 100, maxDelay: 200, jitter: 0 } },
    );
    cleanups.push(() => pair.close());
    pair.client.connection!.serve(agentHandler);
    const clientEvents = pair.client.events();
    const serverEvents = pair.server.events();
    cleanups.push(async () => {
      await clientEvents.return?.();
      await serverEvents.return?.();
    });
    const first = pair.clientSide;

    const closedAt = performance.now();
    await pair.serverSide.close({ timeout: 0, code: CloseCode.GoingAway, reason: "restarting" });
    const closed = await eventFor(clientEvents, EventType.ConnectionClosed, first.id);
    assert.equal(closed.error, undefined, "4006 is an orderly close");
    const received = await nextEvent(clientEvents, EventType.ConnectionReceived, GUARD);
    const elapsed = performance.now() - closedAt;
    assert.ok(elapsed >= 90, `reconnected after ${elapsed} ms, before the 100 ms backoff`);

    const second = pair.client.connection!;
    assert.equal(received.connection, second);
    assert.notEqual(second, first);
    // Back within the server's resumeWindow with its resume token: the same id.
    assert.equal(second.id, first.id);
    assert.equal(received.resumed, true);
    assert.equal((await first.closed).code, CloseCode.GoingAway);
    const serverSide = (await eventFor(serverEvents, EventType.ConnectionReceived, second.id))
      .connection!;
    assert.deepEqual(serverSide.metadata, { name: "test-agent" });
    const down = await withTimeout(serverSide.fetch("/ping"), GUARD, "server → agent");
    assert.equal(await down.text(), `agent on ${second.id} saw /ping`);
    const up = await withTimeout(pair.client.connection!.fetch("/x"), GUARD, "agent → server");
    assert.equal(await up.text(), "server here");
  });

  it("WebSocketClient reconnects to a server restarted behind the same address", async () => {
    const first = new WebSocketServer({
      hostname: "127.0.0.1",
      port: 0,
      closeTimeout: 50,
      handler: () => new Response("first server"),
    });
    cleanups.push(() => first.close());
    const proxy: TcpProxy = await startProxy(first.addr.port);
    cleanups.push(() => proxy.close());
    const client = new WebSocketClient({
      url: `ws://127.0.0.1:${proxy.port}`,
      reconnect: { initialDelay: 20, maxDelay: 200 },
    }).withMetadata({ name: "restart-agent" });
    cleanups.push(() => client.close());
    const connection = await withTimeout(client.connect(), GUARD, "connect");
    connection.serve(agentHandler);
    assert.equal(await (await connection.fetch("/")).text(), "first server");
    const clientEvents = client.events();
    cleanups.push(async () => void await clientEvents.return?.());

    await withTimeout(first.close(), GUARD, "the first server to close");
    // Two failed attempts while nothing listens behind the proxy.
    await proxy.waitAccepted(3, GUARD);
    const second = new WebSocketServer({
      hostname: "127.0.0.1",
      port: 0,
      handler: () => new Response("second server"),
    });
    cleanups.push(() => second.close());
    const serverEvents = second.events();
    cleanups.push(async () => void await serverEvents.return?.());
    proxy.target = second.addr.port;

    const received = await nextEvent(clientEvents, EventType.ConnectionReceived, GUARD);
    const now = client.connection!;
    assert.equal(received.connection, now);
    assert.notEqual(now.id, connection.id);
    const serverSide = (await eventFor(serverEvents, EventType.ConnectionReceived, now.id))
      .connection!;
    assert.deepEqual(serverSide.metadata, { name: "restart-agent" });
    assert.equal(await (await serverSide.fetch("/who")).text(), `agent on ${now.id} saw /who`);
    assert.equal(await (await now.fetch("/")).text(), "second server");
  });

  it("WebSocketClient gives up after reconnect.maxAttempts and publishes a ConnectionFailure", async () => {
    const pair = await startPair({}, {
      reconnect: { initialDelay: 20, maxDelay: 50, maxAttempts: 2 },
    });
    cleanups.push(() => pair.close());
    const events = pair.client.events();
    cleanups.push(async () => void await events.return?.());
    const id = pair.clientSide.id;
    await withTimeout(pair.server.close(), GUARD, "server.close()");
    // Nothing listens on the port any more.
    const failure = await nextEvent(events, EventType.ConnectionFailure, GUARD);
    assert.ok(failure.error instanceof HandshakeError, `error: ${failure.error}`);
    assert.match(failure.error.message, /Gave up reconnecting/);
    assert.equal(failure.error.retryable, false);
    assert.equal(failure.connectionId, id);
    assert.ok(pair.clientSide.isClosed);
    assert.equal(pair.client.connection, pair.clientSide);
  });

  it("WebSocketClient makes exactly reconnect.maxAttempts attempts before giving up", async () => {
    const pair = await startProxiedPair({}, {
      reconnect: { initialDelay: 20, maxDelay: 50, maxAttempts: 3 },
    });
    cleanups.push(() => pair.close());
    const events = pair.client.events();
    cleanups.push(async () => void await events.return?.());
    // Each attempt reaches the proxy, which finds nothing behind it.
    await withTimeout(pair.server.close(), GUARD, "server.close()");
    const failure = await nextEvent(events, EventType.ConnectionFailure, GUARD);
    assert.match(failure.error!.message, /Gave up reconnecting/);
    assert.equal(pair.proxy.accepted, 1 + 3);
  });
});
